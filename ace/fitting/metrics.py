"""Error tables: RMSE and MAE of energies (meV/atom), forces (eV/Å) and stresses (GPa).

Energy errors are per atom, ``(E_pred - E_ref) / N_s``; force errors run over all Cartesian
components; stress errors over the 6 independent (Voigt) components of structures whose stress
is known. Each table has an ``overall`` row and one row per config_type.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from ase.units import GPa

from ace.evaluator import Evaluator, Structure

QUANTITIES = (  # (key, unit, scale from ASE units)
    ("energy", "meV/atom", 1000.0),
    ("forces", "eV/Å", 1.0),
    ("stress", "GPa", 1.0 / GPa),
)
VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


@dataclass
class Predictions:
    """Model predictions on a dataset (same layout as ``ace.data.Dataset``)."""

    energy: np.ndarray  # [n_s] eV
    forces: np.ndarray  # [n_a, 3] eV/Å
    stress: np.ndarray  # [n_s, 3, 3] eV/Å³ (NaN where the structure has no volume)


def predict(potential, dataset, num_threads=None, progress=None):
    """Energies, forces and stresses of ``potential`` on every structure of ``dataset``."""
    # a physical potential (ace.physical.potential) brings its own evaluator
    evaluator = potential.evaluator() if getattr(potential, "kind", None) else Evaluator(potential)
    energy = np.zeros(len(dataset))
    forces = np.zeros((dataset.total_atoms, 3))
    stress = np.full((len(dataset), 3, 3), np.nan)
    volumes = dataset.volumes
    for s in _iterate(range(len(dataset)), progress, "evaluate"):
        sl = dataset.atom_slice(s)
        structure = Structure(potential, dataset.numbers[sl], dataset.positions[sl],
                              dataset.cells[s], dataset.pbc[s])
        result = evaluator.compute(structure, num_threads)
        energy[s] = result.energy
        forces[sl] = result.forces
        if dataset.pbc[s].all() and volumes[s] > 0:
            d = result.strain_derivative
            stress[s] = 0.5 * (d + d.T) / volumes[s]
    return Predictions(energy, forces, stress)


def _iterate(items, progress, description):
    if progress is None:
        return items
    return progress(items, description)


def _errors(errors):
    errors = np.asarray(errors, dtype=float).reshape(-1)
    if errors.size == 0:
        return None, None
    return float(np.sqrt(np.mean(errors ** 2))), float(np.mean(np.abs(errors)))


def _row(dataset, predictions, members):
    """Errors of the structures ``members`` (indices)."""
    n_atoms = dataset.n_atoms[members]
    row = {"n_structures": int(len(members)), "n_atoms": int(n_atoms.sum())}
    de = (predictions.energy[members] - dataset.energy[members]) / n_atoms
    atom_index = np.concatenate([np.arange(dataset.offsets[s], dataset.offsets[s + 1])
                                 for s in members])
    df = predictions.forces[atom_index] - dataset.forces[atom_index]
    df = df[np.isfinite(df).all(axis=1)]
    stress_known = members[dataset.has_stress[members]]
    ds = predictions.stress[stress_known] - dataset.stress[stress_known]
    ds = ds[:, VOIGT[0], VOIGT[1]]
    ds = ds[np.isfinite(ds).all(axis=1)]
    for (key, unit, scale), errors in zip(QUANTITIES, (de, df, ds)):
        rmse, mae = _errors(errors * scale)
        row[f"{key}_rmse"] = rmse
        row[f"{key}_mae"] = mae
    return row


def error_table(dataset, predictions):
    """{"overall": row, "by_config_type": {type: row}}; a row holds n_structures, n_atoms and
    <quantity>_rmse / <quantity>_mae in the units of ``UNITS`` (None where there is no data)."""
    everything = np.arange(len(dataset))
    table = {"units": units(), "overall": _row(dataset, predictions, everything),
             "by_config_type": {}}
    for ctype in sorted(set(dataset.config_type.tolist())):
        members = np.flatnonzero(dataset.config_type == ctype)
        table["by_config_type"][ctype] = _row(dataset, predictions, members)
    return table


def units():
    return {key: unit for key, unit, _ in QUANTITIES}


def evaluate(potential, dataset, num_threads=None, progress=None):
    """The error table of ``potential`` on ``dataset``."""
    return error_table(dataset, predict(potential, dataset, num_threads, progress))


def format_table(table, title=""):
    """A plain-text table: one line per config_type and the overall line."""
    present = [key for key, _, _ in QUANTITIES if table["overall"].get(f"{key}_rmse") is not None]
    unit = dict((key, u) for key, u, _ in QUANTITIES)
    names = list(table["by_config_type"]) + ["overall"]
    width = max(12, *(len(n) for n in names))
    head1 = f"{'config_type':<{width}} {'n_str':>6} {'n_atoms':>8}"
    head2 = " " * (width + 16)
    for key in present:
        label = f"{key} ({unit[key]})"
        head1 += f"  {label:^19}"
        head2 += f"  {'RMSE':>9} {'MAE':>9}"
    lines = [title] if title else []
    lines += [head1, head2, "-" * len(head2)]
    for name in names:
        row = table["overall"] if name == "overall" else table["by_config_type"][name]
        if name == "overall" and len(names) > 1:
            lines.append("-" * len(head2))
        line = f"{name:<{width}} {row['n_structures']:>6} {row['n_atoms']:>8}"
        for key in present:
            line += "  " + " ".join(_cell(row[f"{key}_{stat}"]) for stat in ("rmse", "mae"))
        lines.append(line)
    return "\n".join(lines)


def _cell(value):
    if value is None:
        return f"{'-':>9}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:>9.2e}"
    return f"{value:>9.4f}" if abs(value) < 10 else f"{value:>9.2f}"


def to_json(tables, path=None):
    """JSON text of ``tables`` (a dict of error tables, e.g. {"train": ..., "test": ...})."""
    text = json.dumps(tables, indent=2, sort_keys=False)
    if path is not None:
        from ace.potential import write_atomic
        write_atomic(path, text + "\n")  # a killed fit leaves the old file or the new one
    return text
