"""Reference values: from a YAML file (DFT or experiment, with units and sources), or, without
one, from the training data's own strained crystals.

Reference file format (``potentials/references/Mo.yaml`` is an example)::

    element: Mo
    structure: bcc
    sources:
      zuo2020: "Y. Zuo et al., J. Phys. Chem. A 124, 731 (2020), Table ..."
    properties:
      lattice_constant: {value: 3.168, unit: Å, source: zuo2020}
      melting_point: {value: 2896, unit: K, source: crc}

Every property needs ``value`` and ``unit`` (the unit must be the one ``ace validate`` reports
the property in, see ``UNITS``); ``source`` names an entry of ``sources`` or is free text.
"""
from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np
import yaml
from ase import units

# the unit every property is reported in (references must use the same)
UNITS = {
    "lattice_constant": "Å", "lattice_constant_c": "Å", "cohesive_energy": "eV/atom",
    "atomic_volume": "Å^3/atom", "bulk_modulus": "GPa", "bulk_modulus_derivative": "1",
    "C11": "GPa", "C12": "GPa", "C13": "GPa", "C33": "GPa", "C44": "GPa", "C66": "GPa",
    "C11_data_strains": "GPa", "C44_data_strains": "GPa",
    "vacancy_formation_energy": "eV", "surface_energy_100": "J/m^2",
    "surface_energy_110": "J/m^2", "surface_energy_111": "J/m^2",
    "min_phonon_frequency": "THz", "max_phonon_frequency": "THz", "nve_drift": "meV/atom/ps",
    "melting_point": "K", "dimer_energy_at_0.5": "eV",
}
UNIT_ALIASES = {"Å": ("A", "Angstrom", "angstrom", "Ang"), "J/m^2": ("J/m2", "J m^-2"),
                "Å^3/atom": ("A^3/atom", "A3/atom")}


class ReferenceError(ValueError):
    """A bad reference file; the message names the file and the key."""


def _canonical_unit(unit):
    for canonical, aliases in UNIT_ALIASES.items():
        if unit == canonical or unit in aliases:
            return canonical
    return unit


def load_reference(path):
    """The reference values of a YAML file: {"element", "structure", "properties": {name:
    {"value", "unit", "source"}}, "sources", "path"}."""
    path = os.fspath(path)
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ReferenceError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ReferenceError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ReferenceError(f"{path}: the file does not hold a mapping")
    unknown = sorted(set(data) - {"element", "structure", "sources", "properties", "notes"})
    if unknown:
        raise ReferenceError(f"{path}: unknown key(s) {unknown}")
    properties = data.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise ReferenceError(f"{path}: 'properties' must be a non-empty mapping")
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise ReferenceError(f"{path}: 'sources' must be a mapping of name: citation")
    checked = {}
    for name, entry in properties.items():
        where = f"{path}: properties.{name}"
        if not isinstance(entry, dict) or "value" not in entry or "unit" not in entry:
            raise ReferenceError(f"{where}: needs 'value' and 'unit'")
        try:
            value = float(entry["value"])
        except (TypeError, ValueError) as exc:
            raise ReferenceError(f"{where}: value {entry['value']!r} is not a number") from exc
        if not math.isfinite(value):
            raise ReferenceError(f"{where}: value must be finite")
        unit = _canonical_unit(str(entry["unit"]))
        if name in UNITS and unit != UNITS[name]:
            raise ReferenceError(f"{where}: unit {entry['unit']!r}, but ace validate reports "
                                 f"{name} in {UNITS[name]}")
        source = entry.get("source")
        checked[name] = {"value": value, "unit": unit,
                         "source": sources.get(source, source) if source else None}
    return {"element": data.get("element"), "structure": data.get("structure"),
            "properties": checked, "sources": sources, "path": path}


# ----------------------------------------------------------------------------- from data

def strained_crystals(dataset, conventional, max_strain=0.12, max_displacement=0.3):
    """The structures of ``dataset`` that are the crystal ``conventional`` (one element)
    under a homogeneous deformation, possibly with rattled atoms. When some of them have a
    config_type containing "elastic", only those (hot MD snapshots of the crystal carry
    thermal energy that no strain fit should see).

    A list of (structure index, M, F): cell_s = M @ conventional.cell @ F^T, M an integer
    supercell matrix and F the deformation (relative to ``conventional``)."""
    element_number = int(conventional.numbers[0])
    base = conventional.cell.array
    found = []
    for s in range(len(dataset)):
        sl = dataset.atom_slice(s)
        if not dataset.pbc[s].all() or (dataset.numbers[sl] != element_number).any():
            continue
        cell = dataset.cells[s]
        M = np.rint(cell @ np.linalg.inv(base))
        det = round(abs(np.linalg.det(M)))
        if det == 0 or det * len(conventional) != sl.stop - sl.start:
            continue
        ideal_cell = M @ base
        F_T = np.linalg.solve(ideal_cell, cell)
        if np.abs(F_T - np.eye(3)).max() > max_strain:
            continue
        if _lattice_displacement(dataset.positions[sl], cell, conventional, M) > max_displacement:
            continue
        found.append((s, M, F_T.T))
    elastic = [c for c in found if "elastic" in str(dataset.config_type[c[0]]).lower()]
    return elastic or found


def _lattice_displacement(positions, cell, conventional, M):
    """Largest distance of an atom from its nearest ideal site (after a common shift)."""
    from ase.build import make_supercell
    ideal = make_supercell(conventional, M)
    ideal.set_cell(cell, scale_atoms=True)
    frac = np.linalg.solve(cell.T, positions.T).T
    sites = ideal.get_scaled_positions(wrap=True)
    frac = frac - (frac[0] - sites[np.argmin(_frac_distance(frac[0], sites, cell))])
    worst = 0.0
    for f in frac:
        worst = max(worst, float(_frac_distance(f, sites, cell).min()))
    return worst


def _frac_distance(point, sites, cell):
    d = sites - point
    d -= np.rint(d)
    return np.linalg.norm(d @ cell, axis=1)


def data_lattice_constant(dataset, crystals, conventional):
    """The unstrained lattice constant of the data's strained crystals: the most common
    length of the cell vectors (most strain sets strain one or two axes of one reference
    cell), in units of the conventional cell; None unless it repeats."""
    a_model = conventional.cell.lengths()[0]
    base = conventional.cell.array
    lengths = []
    for s, M, _ in crystals:
        ideal = np.linalg.norm(M @ base, axis=1)
        actual = np.linalg.norm(dataset.cells[s], axis=1)
        lengths += list(np.round(actual / ideal * a_model, 4))
    if not lengths:
        return None
    value, count = Counter(lengths).most_common(1)[0]
    return float(value) if count >= 2 else None


def green_lagrange(F):
    """Voigt Green-Lagrange strain (engineering shear: 2 eta_ij)."""
    eta = 0.5 * (F.T @ F - np.eye(3))
    return np.array([eta[0, 0], eta[1, 1], eta[2, 2], 2 * eta[1, 2], 2 * eta[0, 2],
                     2 * eta[0, 1]])


def cubic_strain_fit(strains, energy_density, identifiable=1e-3):
    """Fit u = u0 + p (e1 + e2 + e3) + C11/2 sum e_i^2 + C12 sum_{i<j} e_i e_j
    + C44/2 sum gamma^2 (u in eV/Å³, strains Voigt) by least squares; GPa.

    A constant whose column carries less than ``identifiable`` of the largest column's weight
    is not determined by the strains (e.g. C12 from uniaxial strains and shears): None."""
    e = np.asarray(strains)
    columns = {
        "u0": np.ones(len(e)), "p": e[:, :3].sum(axis=1),
        "C11": 0.5 * (e[:, :3] ** 2).sum(axis=1),
        "C12": e[:, 0] * e[:, 1] + e[:, 0] * e[:, 2] + e[:, 1] * e[:, 2],
        "C44": 0.5 * (e[:, 3:] ** 2).sum(axis=1),
    }
    scale = max(np.linalg.norm(columns[k]) for k in ("C11", "C12", "C44"))
    usable = [k for k in columns
              if k in ("u0", "p") or np.linalg.norm(columns[k]) > identifiable * scale]
    A = np.column_stack([columns[k] for k in usable])
    if len(e) <= A.shape[1]:
        return {}
    solution = np.linalg.lstsq(A, np.asarray(energy_density), rcond=None)[0]
    fitted = dict(zip(usable, solution))
    return {k: (float(fitted[k] / units.GPa) if k in fitted else None)
            for k in ("C11", "C12", "C44")}


def strain_fit_data(dataset, energies, crystals, conventional, a_data, max_fit_strain=0.05):
    """Strains, energy densities and the cubic fit of ``energies`` (total, per structure of
    ``dataset``) on the strained crystals whose Green-Lagrange strain (relative to the cell
    with lattice constant ``a_data``) stays below ``max_fit_strain``."""
    a_model = conventional.cell.lengths()[0]
    volume_per_atom = conventional.get_volume() / len(conventional) * (a_data / a_model) ** 3
    strains, density, index = [], [], []
    for s, M, F in crystals:
        eta = green_lagrange(F * a_model / a_data)
        if np.abs(eta).max() > max_fit_strain:
            continue
        strains.append(eta)
        density.append(energies[s] / dataset.n_atoms[s] / volume_per_atom)
        index.append(s)
    if len(strains) < 6:
        return None
    return {"indices": index, "strains": np.array(strains), "energy_density": np.array(density),
            "fit": cubic_strain_fit(strains, density)}
