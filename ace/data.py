"""Datasets of labelled structures in a compact form: flat arrays plus per-structure offsets.

Read with :func:`read_dataset` from any file ASE can read (extended XYZ first, ASE databases,
lists of files, glob patterns, ``file@slice`` as in ASE), from pacemaker's pickled DataFrames
(``*.pckl.gzip``, :mod:`ace.pacemaker_data`, only with ``trust_pickle=True``) or build with
:meth:`Dataset.from_atoms`. Labels come from the stored calculator results (what ASE's extxyz
reader makes of ``energy=...`` and a ``forces`` column) or from named ``info``/``arrays`` keys.

Units are ASE's: energies eV, forces eV/Å, stresses eV/Å³ in ASE's sign convention
(positive = tensile, ``stress = (1/V) dE/d(strain)``), stored as full 3x3 tensors.

Every problem with the data raises :class:`DataError` naming the structure as ``file:index``.
"""
from __future__ import annotations

import glob
import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

DEFAULT_CONFIG_TYPE = "default"
DB_SUFFIXES = (".db",)


class DataError(ValueError):
    """Bad or missing data; the message names the file and the structure index."""


@dataclass(frozen=True)
class DataKeys:
    """Where the labels live. ``None`` means: the stored calculator result, else the ASE
    default key (``info["energy"]``, ``arrays["forces"]``, ``info["stress"]``)."""

    energy: str | None = None
    forces: str | None = None
    stress: str | None = None
    virial: str | None = None  # info key of the virial W = -V * stress (eV), as in GAP files
    config_type: str = "config_type"
    weight: str | None = None  # info key of a per-structure weight multiplier

    @classmethod
    def from_dict(cls, settings):
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"data keys: unknown key(s) {unknown} "
                             f"(allowed: {sorted(cls.__dataclass_fields__)})")
        return cls(**settings)


@dataclass
class Dataset:
    """Structures with labels, stored flat. Axes: s = structure, a = atom (all structures)."""

    names: list  # [n_s] "file:index"
    numbers: np.ndarray  # [n_a] atomic numbers
    positions: np.ndarray  # [n_a, 3] Å
    offsets: np.ndarray  # [n_s + 1]: atoms of structure s are offsets[s]:offsets[s + 1]
    cells: np.ndarray  # [n_s, 3, 3] Å
    pbc: np.ndarray  # [n_s, 3] bool
    energy: np.ndarray  # [n_s] eV (total energy)
    forces: np.ndarray  # [n_a, 3] eV/Å; NaN for structures without forces
    stress: np.ndarray  # [n_s, 3, 3] eV/Å³; NaN for structures without stress
    config_type: np.ndarray  # [n_s] str
    weight: np.ndarray  # [n_s] per-structure weight multiplier (default 1)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(cls, images, names=None, keys=None, source="<atoms>"):
        """A dataset from ASE Atoms (labels as in :func:`read_dataset`)."""
        keys = keys or DataKeys()
        images = list(images)
        names = names or [f"{source}:{k}" for k in range(len(images))]
        records = [_record(atoms, name, keys) for atoms, name in zip(images, names)]
        return cls._from_records(records, source)

    @classmethod
    def _from_records(cls, records, source):
        if not records:
            raise DataError(f"{source}: no structures")
        n_atoms = np.array([len(r["numbers"]) for r in records], dtype=np.int64)
        offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(n_atoms, out=offsets[1:])
        return cls(
            names=[r["name"] for r in records],
            numbers=np.concatenate([r["numbers"] for r in records]).astype(np.int64),
            positions=np.concatenate([r["positions"] for r in records]).reshape(-1, 3),
            offsets=offsets,
            cells=np.array([r["cell"] for r in records]).reshape(-1, 3, 3),
            pbc=np.array([r["pbc"] for r in records], dtype=bool).reshape(-1, 3),
            energy=np.array([r["energy"] for r in records], dtype=float),
            forces=np.concatenate([r["forces"] for r in records]).reshape(-1, 3),
            stress=np.array([r["stress"] for r in records]).reshape(-1, 3, 3),
            config_type=np.array([r["config_type"] for r in records], dtype=object),
            weight=np.array([r["weight"] for r in records], dtype=float),
        )

    @classmethod
    def concatenate(cls, datasets):
        datasets = [d for d in datasets if len(d)]
        if not datasets:
            raise DataError("no structures")
        if len(datasets) == 1:
            return datasets[0]
        offsets = [datasets[0].offsets]
        for d in datasets[1:]:
            offsets.append(d.offsets[1:] + offsets[-1][-1])
        return cls(
            names=[n for d in datasets for n in d.names],
            numbers=np.concatenate([d.numbers for d in datasets]),
            positions=np.concatenate([d.positions for d in datasets]),
            offsets=np.concatenate(offsets),
            cells=np.concatenate([d.cells for d in datasets]),
            pbc=np.concatenate([d.pbc for d in datasets]),
            energy=np.concatenate([d.energy for d in datasets]),
            forces=np.concatenate([d.forces for d in datasets]),
            stress=np.concatenate([d.stress for d in datasets]),
            config_type=np.concatenate([d.config_type for d in datasets]),
            weight=np.concatenate([d.weight for d in datasets]),
        )

    # ------------------------------------------------------------------ views
    def __len__(self):
        return len(self.names)

    def __repr__(self):
        types = ", ".join(f"{t}: {n}" for t, n in self.config_type_counts().items())
        return (f"Dataset({len(self)} structures, {self.total_atoms} atoms, "
                f"elements={self.elements}, config_types={{{types}}})")

    @property
    def n_atoms(self):
        """[n_s] atoms per structure."""
        return np.diff(self.offsets)

    @property
    def total_atoms(self):
        return int(self.offsets[-1])

    @property
    def elements(self):
        """Chemical symbols present, sorted alphabetically."""
        return sorted(chemical_symbols[z] for z in np.unique(self.numbers))

    @property
    def has_forces(self):
        """[n_s] bool: forces are known."""
        known = np.isfinite(self.forces).all(axis=1)
        bounds = zip(self.offsets[:-1], self.offsets[1:])
        return np.array([b > a and known[a:b].all() for a, b in bounds], dtype=bool)

    @property
    def has_stress(self):
        """[n_s] bool: the stress is known."""
        return np.isfinite(self.stress).reshape(len(self), 9).all(axis=1)

    @property
    def volumes(self):
        """[n_s] |det(cell)| (0 for cells without volume)."""
        return np.abs(np.linalg.det(self.cells))

    def config_type_counts(self):
        types, counts = np.unique(self.config_type.astype(str), return_counts=True)
        return dict(zip(types.tolist(), counts.tolist()))

    def atom_slice(self, s):
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))

    def atoms(self, s):
        """Structure ``s`` as ASE Atoms with its labels in a SinglePointCalculator."""
        sl = self.atom_slice(s)
        atoms = Atoms(numbers=self.numbers[sl], positions=self.positions[sl], cell=self.cells[s],
                      pbc=self.pbc[s])
        atoms.info["config_type"] = str(self.config_type[s])
        results = {"energy": float(self.energy[s])}
        if np.isfinite(self.forces[sl]).all():
            results["forces"] = self.forces[sl].copy()
        if np.isfinite(self.stress[s]).all():
            results["stress"] = full_3x3_to_voigt_6_stress(self.stress[s])
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def __iter__(self):
        return (self.atoms(s) for s in range(len(self)))

    def counts(self, elements):
        """[n_s, n_elements] number of atoms of each element per structure."""
        index = {atomic_numbers[e]: k for k, e in enumerate(elements)}
        self.check_elements(elements)
        columns = np.array([index[z] for z in self.numbers], dtype=np.int64)
        structure = np.repeat(np.arange(len(self)), self.n_atoms)
        out = np.zeros((len(self), len(elements)))
        np.add.at(out, (structure, columns), 1.0)
        return out

    def subset(self, indices):
        """A new dataset with the structures ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) == 0:
            raise DataError("empty subset of structures")
        atom_index = np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1])
                                     for s in indices])
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(self.n_atoms[indices], out=offsets[1:])
        return Dataset(
            names=[self.names[s] for s in indices], numbers=self.numbers[atom_index],
            positions=self.positions[atom_index], offsets=offsets, cells=self.cells[indices],
            pbc=self.pbc[indices], energy=self.energy[indices], forces=self.forces[atom_index],
            stress=self.stress[indices], config_type=self.config_type[indices],
            weight=self.weight[indices])

    def split(self, fraction, seed=0):
        """(rest, held_out) datasets; see :meth:`split_indices`."""
        rest, held = self.split_indices(fraction, seed)
        return self.subset(rest), self.subset(held)

    def split_indices(self, fraction, seed=0):
        """(rest, held_out) structure indices: ``fraction`` of the structures of each config_type
        held out at random (at least one of a config_type with 2+ structures; never all of one)."""
        if not 0 < fraction < 1:
            raise ValueError(f"split fraction must be between 0 and 1, got {fraction}")
        rng = np.random.default_rng(seed)
        held = []
        for ctype in sorted(set(self.config_type.tolist())):
            members = np.flatnonzero(self.config_type == ctype)
            if len(members) < 2:
                continue
            k = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
            held.extend(rng.choice(members, size=k, replace=False).tolist())
        if not held:
            raise DataError(f"cannot hold out {fraction:.0%} of {len(self)} structure(s) "
                            "(every config_type has a single structure)")
        held = np.sort(np.array(held, dtype=np.int64))
        return np.setdiff1d(np.arange(len(self)), held), held

    # ------------------------------------------------------------------ reference energies
    def isolated_atom_energies(self, elements, cutoff, config_type=None):
        """{element: eV} from the isolated-atom structures of the data: a structure whose
        config_type is ``config_type`` (when given), else any single-atom structure whose
        periodic images (if any) are all farther than ``cutoff`` (an atom alone in a large
        cell, as DFT codes compute free atoms). Several structures of one element are
        averaged; raises DataError naming the missing elements and how they were looked for."""
        return isolated_atom_energies(self, elements, cutoff, config_type)

    # ------------------------------------------------------------------ checks
    def check_elements(self, elements):
        """Raise DataError naming the first structure with an element outside ``elements``."""
        allowed = {atomic_numbers[e] for e in elements}
        bad = ~np.isin(self.numbers, list(allowed))
        if bad.any():
            a = int(np.flatnonzero(bad)[0])
            s = int(np.searchsorted(self.offsets, a, side="right") - 1)
            present = sorted({chemical_symbols[z] for z in self.numbers[bad]})
            raise DataError(f"{self.names[s]}: element(s) {present} are not in the basis "
                            f"(its elements: {list(elements)})")

    def duplicates(self):
        """Pairs (first, repeat) of structure indices with identical numbers, positions and cell
        (to 1e-6 Å)."""
        seen, pairs = {}, []
        for s in range(len(self)):
            sl = self.atom_slice(s)
            h = hashlib.sha1()
            h.update(self.numbers[sl].tobytes())
            h.update(np.round(self.positions[sl], 6).tobytes())
            h.update(np.round(self.cells[s], 6).tobytes())
            key = h.hexdigest()
            if key in seen:
                pairs.append((seen[key], s))
            else:
                seen[key] = s
        return pairs

    def warn_duplicates(self):
        pairs = self.duplicates()
        if pairs:
            shown = "; ".join(f"{self.names[b]} repeats {self.names[a]}" for a, b in pairs[:5])
            more = f" (and {len(pairs) - 5} more)" if len(pairs) > 5 else ""
            warnings.warn(f"{len(pairs)} duplicate structure(s): {shown}{more}", stacklevel=2)
        return pairs


# ---------------------------------------------------------------------- reference energies

def isolated_atom_energies(dataset, elements, cutoff, config_type=None, n_structures=None):
    """{element: eV} from the isolated-atom structures of ``dataset`` (a Dataset, or None for
    none): see :meth:`Dataset.isolated_atom_energies`. ``n_structures``: the size of the
    data they were taken from, for the message (default: its length). A structure whose
    config_type is ``config_type`` (when given), else any single-atom structure whose
    periodic images (if any) are all farther than ``cutoff`` (an atom alone in a large
    cell, as DFT codes compute free atoms). Several structures of one element are
    averaged; raises DataError naming the missing elements and how they were looked for."""
    found = {}
    for s in range(0 if dataset is None else len(dataset)):
        if config_type is not None:
            if str(dataset.config_type[s]) != config_type:
                continue
            if dataset.n_atoms[s] != 1:
                raise DataError(f"{dataset.names[s]}: config_type {config_type!r} marks "
                                f"isolated atoms, but this structure has "
                                f"{dataset.n_atoms[s]} atoms")
        elif dataset.n_atoms[s] != 1 or not _alone_in_cell(dataset.cells[s], dataset.pbc[s],
                                                           cutoff):
            continue
        z = int(dataset.numbers[dataset.offsets[s]])
        found.setdefault(chemical_symbols[z], []).append((float(dataset.energy[s]), s))
    missing = [e for e in elements if e not in found]
    if missing:
        how = (f"structures of config_type {config_type!r}" if config_type is not None
               else f"single-atom structures with no periodic image within the cutoff "
                    f"({cutoff:g} Å)")
        raise DataError(f"e0: isolated: no isolated-atom energy for {missing} among the "
                        f"{len(dataset or ()) if n_structures is None else n_structures} "
                        f"training structures: looked for {how}; add free-atom calculations "
                        f"to the data or give e0 as {{element: eV}}")
    energies = {}
    for element in elements:
        values = np.array([e for e, _ in found[element]])
        if np.ptp(values) > 1e-3:
            names = [dataset.names[s] for _, s in found[element]]
            warnings.warn(f"e0: isolated: the free-atom energies of {element} differ by "
                          f"{np.ptp(values) * 1000:.1f} meV ({names}); using their mean",
                          stacklevel=2)
        energies[element] = float(values.mean())
    return energies


# ---------------------------------------------------------------------- shortest pairs

@dataclass
class ShortestPairs:
    """Per structure of a dataset: the shortest pair within the cutoff (inf, 0, 0 without one),
    the atomic numbers of its two atoms, and the number of pairs within the cutoff."""

    distance: np.ndarray  # [n_s] Å
    z: np.ndarray  # [n_s, 2]
    n_pairs: np.ndarray  # [n_s]


def shortest_pairs(dataset, cutoff, num_threads=None):
    """:class:`ShortestPairs` of ``dataset`` (computed once per dataset and cutoff; a
    :class:`ace.stream.StreamedDataset` computes them as it is opened)."""
    from ace.neighbours import build_neighbour_list  # here: ace.data stays free of the core

    cached = getattr(dataset, "_shortest_pairs", None)
    if cached is not None and cached[0] == cutoff:
        return cached[1]
    n = len(dataset)
    out = ShortestPairs(np.full(n, np.inf), np.zeros((n, 2), dtype=int), np.zeros(n, dtype=int))
    for s in range(n):
        sl = dataset.atom_slice(s)
        try:
            nl = build_neighbour_list(dataset.positions[sl], dataset.cells[s], dataset.pbc[s],
                                      cutoff, num_threads)
        except ValueError as exc:
            raise ValueError(f"{dataset.names[s]}: {exc}") from None
        out.n_pairs[s] = len(nl)
        if len(nl):
            k, d = nl.shortest()
            numbers = dataset.numbers[sl]
            out.distance[s] = d
            out.z[s] = numbers[nl.i[k]], numbers[nl.j[k]]
    dataset._shortest_pairs = (cutoff, out)
    return out


def shortest_distance(dataset, cutoff, num_threads=None):
    """The shortest interatomic distance in ``dataset`` (inf if no pair is within cutoff)."""
    return float(shortest_pairs(dataset, cutoff, num_threads).distance.min(initial=np.inf))


# ---------------------------------------------------------------------- reading

def _alone_in_cell(cell, pbc, cutoff):
    """True if no periodic image of an atom in ``cell`` lies within ``cutoff``: along every
    periodic direction the cell's height (volume / area of the opposite face) exceeds it."""
    cell = np.asarray(cell, dtype=float)
    if not np.any(pbc):
        return True
    volume = abs(np.linalg.det(cell))
    if volume == 0:
        return False
    for k in range(3):
        if pbc[k]:
            area = np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
            if volume / area <= cutoff:
                return False
    return True


def expand_sources(sources):
    """File names from a name, a glob pattern or a list of them (``file@slice`` kept)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = []
    for source in sources:
        source = os.fspath(source)
        base, at, index = source.partition("@")
        if any(ch in base for ch in "*?["):
            matches = sorted(glob.glob(base))
            if not matches:
                raise DataError(f"{base}: the pattern matches no file")
            paths += [m + at + index for m in matches]
        else:
            if not os.path.exists(base):
                raise DataError(f"{base}: no such file")
            paths.append(source)
    if not paths:
        raise DataError("no data files given")
    return paths


def check_pickle_trust(source, trust_pickle):
    """DataError if ``source`` (a file, ``file@slice`` or glob pattern) names a pickle and
    ``trust_pickle`` is false: loading a pickle can run code, so it needs the user's word."""
    from ace.pacemaker_data import PickleTrustError, check_trust

    base = os.fspath(source).partition("@")[0]
    paths = sorted(glob.glob(base)) if any(ch in base for ch in "*?[") else [base]
    try:
        for path in paths:
            check_trust(path, trust_pickle)
    except PickleTrustError as exc:
        raise DataError(str(exc)) from None


def read_dataset(sources, keys=None, warn_duplicates=True, trust_pickle=False, **key_overrides):
    """Read structures from files ASE can read into one :class:`Dataset`.

    ``sources``: a file, a glob pattern or a list of them; ``file@slice`` selects frames as in
    ASE (``data.xyz@:100``); ``.db`` files are read with their key-value pairs. ``keys`` (a
    :class:`DataKeys`, or its fields as keyword arguments) names where the labels are.
    pacemaker's pickled DataFrames are read only with ``trust_pickle=True`` (a pickle can run
    code when loaded), else a DataError says how to proceed.
    """
    keys = keys or DataKeys(**key_overrides)
    datasets = []
    for path in expand_sources(sources):
        check_pickle_trust(path, trust_pickle)
        records = [_record(atoms, name, keys)
                   for name, atoms in _read_images(path, trust_pickle)]
        if not records:
            raise DataError(f"{path}: no structures")
        datasets.append(Dataset._from_records(records, path))
    dataset = Dataset.concatenate(datasets)
    if warn_duplicates:
        dataset.warn_duplicates()
    return dataset


def _read_images(path, trust_pickle=False):
    """Yield (name, atoms) of one source; names are ``file:index``."""
    import ase.io  # here, not at the top: it loads every ASE format (about a second)

    from ace import pacemaker_data

    base, _, index = path.partition("@")
    if base.endswith(DB_SUFFIXES):
        yield from _read_db(base, index)
        return
    if pacemaker_data.is_pickle(base):
        try:
            yield from pacemaker_data.read_images(base, index, trust_pickle)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return
    if os.path.isfile(base) and os.path.getsize(base) == 0:
        return  # an empty file holds no structures
    try:
        images = ase.io.iread(base, index=index or ":")
        for k, atoms in enumerate(images):
            yield f"{base}:{k}", atoms
    except DataError:
        raise
    except Exception as exc:  # ASE raises many kinds; name the file
        raise DataError(f"{base}: cannot read: {type(exc).__name__}: {exc}") from exc


def _read_db(path, selection):
    """Rows of an ASE database with key-value pairs copied into ``info``."""
    import ase.db  # here, not at the top: about a second, and only databases need it

    with ase.db.connect(path) as db:
        rows = db.select(selection) if selection and not selection.startswith(":") else db.select()
        for row in rows:
            atoms = row.toatoms(add_additional_information=True)
            info = atoms.info
            info.update(info.pop("key_value_pairs", {}))
            info.update(info.pop("data", {}) or {})
            yield f"{path}:id={row.id}", atoms


def _results(atoms):
    """The calculator's results for ``atoms``: stored ones (file readers give a
    SinglePointCalculator), else computed now by the attached calculator."""
    calc = atoms.calc
    if calc is None:
        return {}
    if isinstance(calc, SinglePointCalculator):
        return calc.results
    out = {}
    for prop in ("energy", "forces", "stress"):
        if prop not in getattr(calc, "implemented_properties", ()):
            continue
        if prop == "stress" and not (atoms.pbc.all() and atoms.cell.volume > 0):
            continue
        try:
            out[prop] = calc.get_property(prop, atoms)
        except Exception as exc:  # a calculator may refuse a property: treat it as absent
            if prop == "energy":
                raise DataError(f"calculator failed on the energy: {exc}") from exc
    return out


def _lookup(atoms, key, where):
    """A label from ``atoms.info``/``atoms.arrays`` or the calculator's results, else None."""
    if key in where and where[key] is not None:
        return where[key]
    return _results(atoms).get(key)


def _record(atoms, name, keys):
    n = len(atoms)
    if n == 0:
        raise DataError(f"{name}: structure without atoms")
    energy = _energy(atoms, name, keys)
    forces = _forces(atoms, name, keys)
    stress = _stress(atoms, name, keys)
    ctype = atoms.info.get(keys.config_type, DEFAULT_CONFIG_TYPE)
    weight = 1.0
    if keys.weight is not None and keys.weight in atoms.info:
        weight = _number(atoms.info[keys.weight], name, f"weight '{keys.weight}'")
        if weight < 0:
            raise DataError(f"{name}: negative weight {weight}")
    positions = np.asarray(atoms.positions, dtype=float)
    if not np.isfinite(positions).all():
        raise DataError(f"{name}: positions contain NaN or inf")
    return {"name": name, "numbers": np.asarray(atoms.numbers), "positions": positions,
            "cell": np.asarray(atoms.cell.array, dtype=float), "pbc": np.asarray(atoms.pbc),
            "energy": energy, "forces": forces, "stress": stress, "config_type": str(ctype),
            "weight": weight}


def _number(value, name, what):
    try:
        value = float(np.asarray(value, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise DataError(f"{name}: {what} is not a number: {value!r}") from None
    if not np.isfinite(value):
        raise DataError(f"{name}: {what} is NaN or inf")
    return value


def _energy(atoms, name, keys):
    if keys.energy is not None:
        value = _lookup(atoms, keys.energy, atoms.info)
        where = f"info key or calculator result '{keys.energy}'"
    else:
        value = _results(atoms).get("energy", atoms.info.get("energy"))
        where = "calculator result 'energy' or info key 'energy'"
    if value is None:
        raise DataError(f"{name}: missing energy (looked for the {where})")
    return _number(value, name, "energy")


def _forces(atoms, name, keys):
    n = len(atoms)
    key = keys.forces or "forces"
    if keys.forces is not None:
        value = _lookup(atoms, keys.forces, atoms.arrays)
    else:
        value = _results(atoms).get("forces", atoms.arrays.get("forces"))
    if value is None:
        return np.full((n, 3), np.nan)
    try:
        forces = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{name}: forces '{key}' are not numbers") from None
    if forces.shape != (n, 3):
        raise DataError(f"{name}: forces '{key}' have shape {forces.shape}, expected ({n}, 3)")
    if not np.isfinite(forces).all():
        raise DataError(f"{name}: forces '{key}' contain NaN or inf")
    return forces


def _stress(atoms, name, keys):
    volume = abs(atoms.cell.volume) if atoms.pbc.all() else 0.0
    value, virial = None, None
    if keys.stress is not None:
        value = _lookup(atoms, keys.stress, atoms.info)
    elif keys.virial is None:
        value = _results(atoms).get("stress", atoms.info.get("stress"))
    if keys.virial is not None and value is None:
        virial = atoms.info.get(keys.virial)
    if value is None and virial is None:
        return np.full((3, 3), np.nan)
    what = f"stress '{keys.stress or 'stress'}'" if value is not None else f"virial '{keys.virial}'"
    try:
        tensor = np.asarray(value if value is not None else virial, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{name}: {what} is not numeric") from None
    if tensor.size == 6:
        tensor = voigt_6_to_full_3x3_stress(tensor)
    elif tensor.size == 9:
        tensor = tensor.reshape(3, 3)
    else:
        raise DataError(f"{name}: {what} has {tensor.size} values, expected 6 (Voigt) or 9")
    if not np.isfinite(tensor).all():
        raise DataError(f"{name}: {what} contains NaN or inf")
    if volume <= 0:
        raise DataError(f"{name}: {what} given for a structure that is not periodic in 3D")
    if value is None:
        tensor = -tensor / volume
    return tensor
