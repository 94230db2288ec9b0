"""Streamed datasets: structures read lazily, in chunks, from any number of files.

A :class:`StreamedDataset` never holds the structures of its files at once. Opening it plans
the chunks (runs of at most ``chunk_structures`` consecutive structures of one file: byte
ranges of an extended XYZ file, found by scanning its frame headers; row ranges of an ASE
database; frame ranges of any other file ASE reads) and reads each chunk once for its
*summary*: per structure a few numbers (config_type, weight, energy, atom counts per
element, whether forces and stress are known, the shortest pair within the cutoff, a hash of
the geometry) and the single-atom structures whole (for ``e0: isolated``). These per-structure
numbers are what the fit's bookkeeping needs (weights, folds, E0, the sanity checks, the basis
size), so a streamed fit makes the same choices as an in-memory one on the same files: the
folds of :func:`ace.fitting.linear.fold_indices` and the weights of
:func:`ace.fitting.linear.structure_weights` are computed from the summary exactly as from a
:class:`ace.data.Dataset`. The summary costs a few tens of bytes per structure; the design rows
then read each chunk again (:meth:`StreamedDataset.chunk`), so peak memory is one chunk plus the
basis-sized normal equations, whatever the size of the data.

Structures are named as :func:`ace.data.read_dataset` names them (``file:index``,
``file:id=N`` for databases), and a chunk is checked against its summary when it is read again
(a file changed in between is an error naming it). The summaries and the chunks are computed
by any ``map(function, items)`` that returns results in order (the built-in ``map`` in
process; :mod:`ace.fitting.distributed` passes Dask's), so workers can read their own chunks
from a shared file system.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from ace.data import (DB_SUFFIXES, DataError, DataKeys, Dataset, ShortestPairs, _read_images,
                      _record, check_pickle_trust, expand_sources, isolated_atom_energies,
                      shortest_pairs)

DEFAULT_CHUNK_STRUCTURES = 256


@dataclass(frozen=True)
class Chunk:
    """Consecutive structures of one file. ``kind``: "extxyz" (``offset``/``length``: the
    bytes of its frames), "db" (``offset``: the first row, in the order of the ids) or "ase"
    (any format: frames ``first``..``first + count`` of the source ``path``, which may carry
    an ``@slice``). ``first``: index of its first structure within the file."""

    path: str
    kind: str
    first: int
    count: int
    offset: int = 0
    length: int = 0
    selection: str = ""  # a database's selection (the part after @ in ``file.db@key=value``)


def plan_chunks(sources, chunk_structures=DEFAULT_CHUNK_STRUCTURES):
    """The chunks of ``sources`` (a file, glob pattern or list, as :func:`read_dataset`)."""
    if isinstance(chunk_structures, bool) or not isinstance(chunk_structures, int) \
            or chunk_structures < 1:
        raise ValueError(f"chunk_structures: expected an integer >= 1, got {chunk_structures!r}")
    chunks = []
    for path in expand_sources(sources):
        check_pickle_trust(path, False)  # pickles are not streamed: read_dataset reads them
        base, at, index = path.partition("@")
        if base.endswith(DB_SUFFIXES):
            chunks += _plan_db(base, index, chunk_structures)
        elif not at and _is_extxyz(base):
            chunks += _plan_extxyz(base, chunk_structures)
        else:
            n = sum(1 for _ in _read_images(path))
            chunks += [Chunk(path, "ase", k, min(chunk_structures, n - k))
                       for k in range(0, n, chunk_structures)]
    if not chunks:
        raise DataError(f"{sources}: no structures")
    return chunks


def _is_extxyz(path):
    from ase.io.formats import filetype

    try:
        return filetype(path) == "extxyz"
    except Exception:  # unknown or unreadable: the generic reader names the problem
        return False


def _plan_extxyz(path, chunk_structures):
    """Byte ranges of runs of frames, found as ASE's extended XYZ reader finds its frames (a
    count line, a comment line, the atom lines, up to 3 VEC lines; a blank line ends)."""
    chunks, starts = [], []
    with open(path, "rb") as f:
        while True:
            position = f.tell()
            line = f.readline()
            if line.strip() == b"":
                break
            try:
                n_atoms = int(line)
            except ValueError:
                raise DataError(f"{path}:{len(starts) + len(chunks) * chunk_structures}: "
                                f"expected the number of atoms of an extended XYZ frame, got "
                                f"{line[:40]!r}") from None
            starts.append(position)
            f.readline()
            for _ in range(n_atoms):
                f.readline()
            while True:
                before = f.tell()
                if not f.readline().lstrip().startswith(b"VEC"):
                    f.seek(before)
                    break
            if len(starts) == chunk_structures:
                chunks.append(_xyz_chunk(path, chunks, starts, f.tell()))
                starts = []
        if starts:
            chunks.append(_xyz_chunk(path, chunks, starts, f.tell()))
    return chunks


def _xyz_chunk(path, chunks, starts, end):
    first = sum(c.count for c in chunks)
    return Chunk(path, "extxyz", first, len(starts), starts[0], end - starts[0])


def _plan_db(path, selection, chunk_structures):
    import ase.db

    selection = "" if selection.startswith(":") else selection
    with ase.db.connect(path) as db:
        n = db.count(selection or None)
    return [Chunk(path, "db", k, min(chunk_structures, n - k), offset=k, selection=selection)
            for k in range(0, n, chunk_structures)]


def chunk_images(chunk):
    """(name, atoms) of the structures of ``chunk``, named as :func:`read_dataset` names them."""
    if chunk.kind == "extxyz":
        import ase.io

        with open(chunk.path, "rb") as f:
            f.seek(chunk.offset)
            text = f.read(chunk.length).decode()
        try:
            images = ase.io.read(io.StringIO(text), index=":", format="extxyz")
        except Exception as exc:
            raise DataError(f"{chunk.path}:{chunk.first}: cannot read: "
                            f"{type(exc).__name__}: {exc}") from exc
        return [(f"{chunk.path}:{chunk.first + k}", atoms) for k, atoms in enumerate(images)]
    if chunk.kind == "db":
        import ase.db

        out = []
        with ase.db.connect(chunk.path) as db:
            for row in db.select(chunk.selection or None, offset=chunk.offset,
                                 limit=chunk.count, sort="id"):
                atoms = row.toatoms(add_additional_information=True)
                info = atoms.info
                info.update(info.pop("key_value_pairs", {}))
                info.update(info.pop("data", {}) or {})
                out.append((f"{chunk.path}:id={row.id}", atoms))
        return out
    images = _read_images(chunk.path)
    out = []
    for k, item in enumerate(images):
        if k >= chunk.first + chunk.count:
            break
        if k >= chunk.first:
            out.append(item)
    return out


def read_chunk(chunk, keys=None):
    """The structures of ``chunk`` as a :class:`Dataset` (a DataError names a changed file)."""
    images = chunk_images(chunk)
    if len(images) != chunk.count:
        raise DataError(f"{chunk.path}: {len(images)} structures where {chunk.count} were "
                        f"found from structure {chunk.first} on: the file changed while it "
                        "was being read")
    keys = keys or DataKeys()
    return Dataset._from_records([_record(atoms, name, keys) for name, atoms in images],
                                 chunk.path)


def geometry_hash(dataset, s):
    """64-bit hash of the numbers, positions and cell of structure ``s`` (to 1e-6 Å), as
    :meth:`Dataset.duplicates` compares structures."""
    sl = dataset.atom_slice(s)
    h = hashlib.sha1()
    h.update(dataset.numbers[sl].tobytes())
    h.update(np.round(dataset.positions[sl], 6).tobytes())
    h.update(np.round(dataset.cells[s], 6).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def summarise_chunk(chunk, keys=None, cutoff=None):
    """The per-structure numbers of ``chunk`` a :class:`StreamedDataset` keeps (a dict of
    arrays); with ``cutoff``, the shortest pair of each structure within it as well."""
    data = read_chunk(chunk, keys)
    numbers = np.unique(data.numbers)
    counts = np.zeros((len(data), len(numbers)), dtype=np.int32)
    structure = np.repeat(np.arange(len(data)), data.n_atoms)
    np.add.at(counts, (structure, np.searchsorted(numbers, data.numbers)), 1)
    summary = {
        "config_type": data.config_type.astype(str), "weight": data.weight,
        "energy": data.energy, "n_atoms": data.n_atoms, "numbers": numbers, "counts": counts,
        "has_forces": data.has_forces, "has_stress": data.has_stress,
        "hash": np.array([geometry_hash(data, s) for s in range(len(data))], dtype=np.uint64),
        "ids": np.array([int(n.rpartition("=")[2]) for n in data.names], dtype=np.int64)
        if chunk.kind == "db" else None,
        "single": data.subset(np.flatnonzero(data.n_atoms == 1))
        if (data.n_atoms == 1).any() else None,
    }
    if cutoff is not None:
        pairs = shortest_pairs(data, cutoff, 1)
        summary.update(pair_distance=pairs.distance, pair_z=pairs.z, n_pairs=pairs.n_pairs)
    return summary


class StructureNames:
    """The names of a streamed dataset's structures, made on demand (``file:index``)."""

    def __init__(self, chunks, starts, ids):
        self._chunks, self._starts, self._ids = chunks, starts, ids

    def __len__(self):
        return int(self._starts[-1])

    def __getitem__(self, s):
        if isinstance(s, slice):
            return [self[k] for k in range(*s.indices(len(self)))]
        s = int(s)
        if not -len(self) <= s < len(self):
            raise IndexError(s)
        s %= len(self)
        k = int(np.searchsorted(self._starts, s, side="right") - 1)
        chunk = self._chunks[k]
        if chunk.kind == "db":
            return f"{chunk.path}:id={self._ids[k][s - self._starts[k]]}"
        base = chunk.path.partition("@")[0]
        return f"{base}:{chunk.first + s - self._starts[k]}"

    def __iter__(self):
        return (self[s] for s in range(len(self)))


@dataclass
class StreamedDataset:
    """Structures read in chunks from files; the per-structure numbers of the fit in memory.

    Open with :meth:`open`. Offers what the fit's bookkeeping reads from a
    :class:`ace.data.Dataset` (``len``, ``names``, ``n_atoms``, ``energy``, ``weight``,
    ``config_type``, ``has_forces``, ``has_stress``, :meth:`counts`, :meth:`check_elements`,
    :meth:`split_indices`, :meth:`isolated_atom_energies`, :meth:`duplicates`), the
    structures chunk by chunk (:meth:`chunk`) and one by one (:meth:`atoms`, reading its chunk)."""

    chunks: list
    keys: DataKeys
    starts: np.ndarray  # [n_chunks + 1] index of each chunk's first structure
    config_codes: np.ndarray  # [n_s] index into config_types
    config_types: list
    weight: np.ndarray
    energy: np.ndarray
    n_atoms: np.ndarray
    numbers: np.ndarray  # [n_z] atomic numbers present
    element_counts: np.ndarray  # [n_s, n_z] atoms of each of ``numbers`` per structure
    has_forces: np.ndarray
    has_stress: np.ndarray
    hashes: np.ndarray
    single_atoms: Dataset | None  # the single-atom structures, whole
    single_index: np.ndarray  # their indices
    names: StructureNames = field(repr=False)
    _cached: tuple = field(default=(None, None), repr=False)

    @classmethod
    def open(cls, sources, keys=None, chunk_structures=DEFAULT_CHUNK_STRUCTURES, cutoff=None,
             map=map):
        """Plan the chunks of ``sources`` and summarise them with ``map`` (in order). With
        ``cutoff`` the shortest pairs within it are computed as well (for the sanity checks
        and the automatic core repulsion; :func:`ace.fitting.config.shortest_pairs` returns
        them without reading the data again)."""
        keys = keys or DataKeys()
        chunks = plan_chunks(sources, chunk_structures)
        summaries = list(map(_summarise, [(c, keys, cutoff) for c in chunks]))
        dataset = cls._merge(chunks, keys, summaries)
        if cutoff is not None:
            pairs = ShortestPairs(*(np.concatenate([s[k] for s in summaries])
                                    for k in ("pair_distance", "pair_z", "n_pairs")))
            dataset._shortest_pairs = (cutoff, pairs)
        return dataset

    @classmethod
    def _merge(cls, chunks, keys, summaries):
        starts = np.zeros(len(chunks) + 1, dtype=np.int64)
        np.cumsum([c.count for c in chunks], out=starts[1:])
        numbers = np.unique(np.concatenate([s["numbers"] for s in summaries]))
        counts = np.zeros((int(starts[-1]), len(numbers)), dtype=np.int32)
        types, codes = [], []
        for k, s in enumerate(summaries):
            counts[starts[k]:starts[k + 1], np.searchsorted(numbers, s["numbers"])] = s["counts"]
            codes.append(np.array([_code(types, t) for t in s["config_type"]], dtype=np.int32))
        singles = [(starts[k] + np.flatnonzero(s["n_atoms"] == 1), s["single"])
                   for k, s in enumerate(summaries) if s["single"] is not None]
        return cls(
            chunks=chunks, keys=keys, starts=starts, config_codes=np.concatenate(codes),
            config_types=types,
            **{k: np.concatenate([s[k] for s in summaries])
               for k in ("weight", "energy", "n_atoms", "has_forces", "has_stress")},
            numbers=numbers, element_counts=counts,
            hashes=np.concatenate([s["hash"] for s in summaries]),
            single_atoms=Dataset.concatenate([d for _, d in singles]) if singles else None,
            single_index=np.concatenate([i for i, _ in singles]) if singles
            else np.zeros(0, dtype=np.int64),
            names=StructureNames(chunks, starts, [s["ids"] for s in summaries]))

    # ------------------------------------------------------------------ Dataset's views
    def __len__(self):
        return int(self.starts[-1])

    def __repr__(self):
        types = ", ".join(f"{t}: {n}" for t, n in self.config_type_counts().items())
        return (f"StreamedDataset({len(self)} structures, {self.total_atoms} atoms, "
                f"{len(self.chunks)} chunks, elements={self.elements}, "
                f"config_types={{{types}}})")

    @property
    def config_type(self):
        """[n_s] config_type of each structure (str objects)."""
        return np.array(self.config_types, dtype=object)[self.config_codes]

    @property
    def total_atoms(self):
        return int(self.n_atoms.sum())

    @property
    def elements(self):
        return sorted(chemical_symbols[z] for z in self.numbers)

    def config_type_counts(self):
        return Dataset.config_type_counts(self)

    def split_indices(self, fraction, seed=0):
        return Dataset.split_indices(self, fraction, seed)

    def counts(self, elements):
        """[n_s, n_elements] number of atoms of each element per structure."""
        self.check_elements(elements)
        out = np.zeros((len(self), len(elements)))
        for k, z in enumerate(self.numbers):
            out[:, elements.index(chemical_symbols[z])] = self.element_counts[:, k]
        return out

    def check_elements(self, elements):
        """DataError naming the first structure with an element outside ``elements``."""
        allowed = {atomic_numbers[e] for e in elements}
        bad = [k for k, z in enumerate(self.numbers) if z not in allowed]
        if bad:
            s = int(np.flatnonzero(self.element_counts[:, bad].any(axis=1))[0])
            present = sorted(chemical_symbols[self.numbers[k]] for k in bad)
            raise DataError(f"{self.names[s]}: element(s) {present} are not in the basis "
                            f"(its elements: {list(elements)})")

    def isolated_atom_energies(self, elements, cutoff, config_type=None):
        """As :meth:`Dataset.isolated_atom_energies` (from the single-atom structures kept)."""
        if config_type is not None:
            bad = np.flatnonzero((self.config_type == config_type) & (self.n_atoms != 1))
            if len(bad):
                s = int(bad[0])
                raise DataError(f"{self.names[s]}: config_type {config_type!r} marks isolated "
                                f"atoms, but this structure has {self.n_atoms[s]} atoms")
        return isolated_atom_energies(self.single_atoms, elements, cutoff, config_type,
                                      n_structures=len(self))

    def duplicates(self):
        """Pairs (first, repeat) of structures with the same geometry (hashes compared)."""
        seen, pairs = {}, []
        for s, h in enumerate(self.hashes.tolist()):
            if h in seen:
                pairs.append((seen[h], s))
            else:
                seen[h] = s
        return pairs

    def warn_duplicates(self):
        return Dataset.warn_duplicates(self)

    # ------------------------------------------------------------------ the structures
    def chunk(self, k):
        """Chunk ``k`` read as a :class:`Dataset`."""
        return read_chunk(self.chunks[k], self.keys)

    def atoms(self, s):
        """Structure ``s`` as ASE Atoms (its chunk is read and kept until another is asked)."""
        k = int(np.searchsorted(self.starts, s, side="right") - 1)
        if self._cached[0] != k:
            self._cached = (k, self.chunk(k))
        return self._cached[1].atoms(int(s - self.starts[k]))

    def __iter__(self):
        return (self.atoms(s) for s in range(len(self)))


def _summarise(arguments):
    return summarise_chunk(*arguments)


def _code(types, name):
    try:
        return types.index(name)
    except ValueError:
        types.append(name)
        return len(types) - 1


def open_dataset(sources, keys=None, stream=False, chunk_structures=DEFAULT_CHUNK_STRUCTURES,
                 cutoff=None, trust_pickle=False, map=map):
    """A :class:`StreamedDataset` with ``stream``, else the in-memory :class:`Dataset` of
    :func:`ace.data.read_dataset` (``trust_pickle`` for pacemaker's pickles, which are never
    streamed)."""
    if not stream:
        from ace.data import read_dataset

        return read_dataset(sources, keys, trust_pickle=trust_pickle)
    return StreamedDataset.open(sources, keys, chunk_structures, cutoff, map)

