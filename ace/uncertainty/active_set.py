"""Active sets and the extrapolation grade gamma (D-optimality).

For each element an active set is a square matrix A whose rows are the projection vectors
(see ace.uncertainty.projections) of n training atoms chosen by MaxVol, n = the length of the
element's projection vector. The grade of an atom with projection b is

    gamma = max_j |(b A⁻¹)_j|,

the largest coefficient needed to write b as a combination of the active rows: gamma <= 1 (up
to the MaxVol tolerance) on every training atom, gamma > 1 where the potential extrapolates.

File (``ActiveSet.save``/``load``): YAML read with ``yaml.safe_load`` only, whose first line is
a SHA-256 checksum of the rest (as the potential file), written atomically. It records the
fingerprint of the potential it belongs to (``potential_fingerprint``), and ``check`` refuses an
active set made for another potential. Matrices are stored as base64 of little-endian float64.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os

import numpy as np
import yaml
from threadpoolctl import ThreadpoolController

from ace._core import effective_n_threads
from ace.evaluator import Evaluator
from ace.limits import yaml_load_bounded
from ace.potential import SafeLoader, read_checksummed, write_checksummed
from ace.uncertainty.maxvol import (DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE, RANK_TOLERANCE,
                                    RankDeficientError, column_scales, maxvol)
from ace.uncertainty.projections import (DEFAULT_MODE, check_mode, per_element_projections,
                                         projection_widths)

FORMAT_NAME = "ace-active-set"
FORMAT_VERSION = 1
CHECKSUM_PREFIX = "# ace-active-set sha256="
DEFAULT_BATCH_SIZE = 200  # structures whose projections are held at once while building
# A direction of projection space that no training atom spans (a function zero on every atom,
# or functions linearly dependent on them) gets a placeholder row this small (relative to the
# largest singular value): an atom with a component along it gets a huge gamma, as it should.
PLACEHOLDER_SCALE = 1e-8
_blas_controller = None


def blas_threads(num_threads):
    """Context in which numpy's BLAS runs on ``num_threads`` threads (None: OMP_NUM_THREADS),
    so that gamma uses the calculator's threads, not BLAS' own default (all cores)."""
    global _blas_controller
    if _blas_controller is None:  # finding the BLAS libraries takes a few ms: once
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=effective_n_threads(num_threads), user_api="blas")


class ActiveSetError(ValueError):
    """An active-set file is malformed, truncated, or belongs to another potential."""


def potential_fingerprint(potential):
    """SHA-256 of everything that defines the potential's energies (metadata and committee
    excluded)."""
    data = potential.to_dict()
    data.pop("metadata", None)
    data.pop("committee", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ActiveSet:
    """Per element: the active rows A [n, n], where they came from, and A⁻¹."""

    def __init__(self, elements, mode, matrices, fingerprint, tolerance=DEFAULT_TOLERANCE,
                 origins=None):
        self.elements = list(elements)
        self.mode = check_mode(mode)
        self.matrices = {e: np.ascontiguousarray(m, dtype=float) for e, m in matrices.items()}
        self.fingerprint = str(fingerprint)
        self.tolerance = float(tolerance)
        # per element: [n, 2] (structure index, atom index) of each row, -1 for placeholders
        self.origins = {e: np.asarray(o, dtype=np.int64).reshape(-1, 2)
                        for e, o in (origins or {}).items()}
        self.inverses = {}
        for e, a in self.matrices.items():
            if a.ndim != 2 or a.shape[0] != a.shape[1]:
                raise ActiveSetError(f"active set of {e}: matrix must be square, got {a.shape}")
            try:
                self.inverses[e] = np.linalg.inv(a) if a.size else a.copy()
            except np.linalg.LinAlgError as exc:
                raise ActiveSetError(f"active set of {e}: the matrix is singular") from exc

    def check(self, potential):
        """Raise ActiveSetError unless this active set belongs to ``potential``."""
        if self.fingerprint != potential_fingerprint(potential):
            raise ActiveSetError(
                "the active set was built for another potential (fingerprint "
                f"{self.fingerprint[:12]}..., this potential's is "
                f"{potential_fingerprint(potential)[:12]}...); build it again with "
                "`ace active-set`")
        widths = projection_widths(potential, self.mode)
        for i, e in enumerate(potential.elements):
            if self.matrices[e].shape[0] != widths[i]:
                raise ActiveSetError(f"active set of {e}: {self.matrices[e].shape[0]} rows, the "
                                     f"potential has {widths[i]} projections")

    def gamma(self, projections, species, num_threads=None):
        """Per-atom grade from projections [n_atoms, width] (rows padded as the kernel's) and
        element indices [n_atoms]: one float64 matrix product per element, on ``num_threads``
        BLAS threads (None: OMP_NUM_THREADS).

        Float64 throughout: the active rows are nearly collinear (condition numbers of 1e12
        are usual), so the coefficients b A⁻¹ come out of cancellations of terms up to ~1e8
        times larger (benchmarks/README.md); a float32 product would not give even one digit.
        """
        gamma = np.zeros(len(species))
        with blas_threads(num_threads):
            for index, e in enumerate(self.elements):
                atoms = np.flatnonzero(species == index)
                if len(atoms) == 0:
                    continue
                inverse = self.inverses[e]
                # one element only (the usual case): a view, no copy of the rows
                rows = (projections[:, :inverse.shape[0]] if len(atoms) == len(species)
                        else projections[atoms, :inverse.shape[0]])
                coefficients = rows @ inverse
                np.abs(coefficients, out=coefficients)
                gamma[atoms] = coefficients.max(axis=1, initial=0.0)
        return gamma

    # ------------------------------------------------------------------------------- file
    def to_dict(self):
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "tolerance": self.tolerance,
            "potential_fingerprint": self.fingerprint,
            "elements": list(self.elements),
            "active": {e: {"size": int(self.matrices[e].shape[0]),
                           "rows": _encode(self.matrices[e]),
                           "origins": self.origins.get(
                               e, np.full((len(self.matrices[e]), 2), -1)).tolist()}
                       for e in self.elements},
        }

    def save(self, path):
        write_checksummed(path, CHECKSUM_PREFIX, self.to_dict())

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        body = read_checksummed(path, CHECKSUM_PREFIX, ActiveSetError, "ace active-set")
        try:
            data = yaml_load_bounded(body, SafeLoader, path, ActiveSetError)
            return cls._from_dict(data)
        except ActiveSetError as exc:
            raise ActiveSetError(f"{path}: {exc}") from exc
        except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise ActiveSetError(f"{path}: malformed active set: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _from_dict(cls, data):
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ActiveSetError(f"'format' must be '{FORMAT_NAME}'")
        version = data["format_version"]
        if not isinstance(version, int) or version < 1:
            raise ActiveSetError(f"format_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise ActiveSetError(f"format_version {version} is newer than this ace "
                                 f"({FORMAT_VERSION}); upgrade ace")
        elements = list(data["elements"])
        matrices, origins = {}, {}
        for e in elements:
            entry = data["active"][e]
            size = int(entry["size"])
            matrices[e] = _decode(entry["rows"], (size, size), e)
            origins[e] = np.array(entry["origins"], dtype=np.int64).reshape(size, 2)
        return cls(elements, data["mode"], matrices, data["potential_fingerprint"],
                   float(data["tolerance"]), origins)


def _encode(matrix):
    return base64.b64encode(np.ascontiguousarray(matrix, dtype="<f8").tobytes()).decode("ascii")


def _decode(text, shape, element):
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 8 * shape[0] * shape[1]:
        raise ActiveSetError(f"active set of {element}: {len(raw)} bytes of data, expected "
                             f"{8 * shape[0] * shape[1]} for {shape}")
    matrix = np.frombuffer(raw, dtype="<f8").reshape(shape).astype(float)
    if not np.all(np.isfinite(matrix)):
        raise ActiveSetError(f"active set of {element}: NaN or inf in the matrix")
    return matrix


# ---------------------------------------------------------------------------------- building
class _StructureSequence:
    """Indexable view of a list of Atoms or an ace.data.Dataset (whose structures are made on
    demand, so that a large dataset is not held as Atoms all at once)."""

    def __init__(self, structures):
        if hasattr(structures, "atoms") and hasattr(structures, "n_atoms"):
            self._get = structures.atoms
            self._length = len(structures)
        else:
            items = structures if hasattr(structures, "__getitem__") else list(structures)
            self._get = items.__getitem__
            self._length = len(items)

    def __len__(self):
        return self._length

    def __getitem__(self, k):
        return self._get(k)

    def __iter__(self):
        return (self._get(k) for k in range(self._length))


def _check_atom_counts(potential, structures, widths):
    counts = np.zeros(len(potential.elements), dtype=np.int64)
    index = {e: i for i, e in enumerate(potential.elements)}
    for k, atoms in enumerate(structures):
        for symbol in atoms.get_chemical_symbols():
            if symbol not in index:
                raise ValueError(f"structure {k}: element {symbol} is not in the potential "
                                 f"(it has {potential.elements})")
            counts[index[symbol]] += 1
    for i, e in enumerate(potential.elements):
        if counts[i] < widths[i]:
            raise ValueError(f"element {e}: {counts[i]} training atoms but {widths[i]} projections "
                             "(functions): an active set needs at least as many atoms as "
                             "functions of the element")


def _with_placeholders(rows, origins):
    """Append a tiny row along every direction the rows do not span (see PLACEHOLDER_SCALE)."""
    scale = column_scales(rows)  # as maxvol's rank test
    _, singular, vt = np.linalg.svd(rows / scale, full_matrices=True)
    top = singular[0] if len(singular) else 0.0
    spanned = int(np.sum(singular > RANK_TOLERANCE * top)) if top > 0 else 0
    extra = PLACEHOLDER_SCALE * (top or 1.0) * vt[spanned:] * scale
    return (np.vstack([rows, extra]),
            np.vstack([origins, np.full((len(extra), 2), -1, dtype=np.int64)]))


def build_active_set(potential, structures, mode=DEFAULT_MODE, tolerance=DEFAULT_TOLERANCE,
                     batch_size=DEFAULT_BATCH_SIZE, refinement_passes=10,
                     max_iterations=DEFAULT_MAX_ITERATIONS, num_threads=None, progress=None):
    """The active set of ``potential`` on ``structures`` (a list of ASE Atoms or an
    ``ace.data.Dataset``; no labels are needed).

    The structures are read in batches of ``batch_size``; MaxVol runs on the current active
    rows together with each batch's atoms, so memory is bounded by one batch. Each refinement
    pass (at most ``refinement_passes``) reads the data again and reruns MaxVol with the atoms
    whose gamma still exceeds the tolerance, until none does. ``progress(message)`` is called
    per batch if given.
    """
    check_mode(mode)
    structures = _StructureSequence(structures)
    widths = projection_widths(potential, mode)
    _check_atom_counts(potential, structures, widths)
    evaluator = Evaluator(potential)
    elements = potential.elements
    active = {e: np.zeros((0, widths[e])) for e in widths}
    origins = {e: np.zeros((0, 2), dtype=np.int64) for e in widths}
    pending = {e: ([], []) for e in widths}  # rows waiting until an element has enough

    largest = {}  # element -> largest gamma of the rows its last MaxVol saw

    def select(e, rows, where):
        rows = np.vstack([active[e], rows])
        where = np.vstack([origins[e], where])
        try:
            chosen, largest[e] = maxvol(rows, tolerance, max_iterations, num_threads, True)
        except RankDeficientError:
            rows, where = _with_placeholders(rows, where)
            chosen, largest[e] = maxvol(rows, tolerance, max_iterations, num_threads, True)
        active[e], origins[e] = rows[chosen], where[chosen]

    batches = [range(s, min(s + batch_size, len(structures)))
               for s in range(0, len(structures), batch_size)]
    for number, batch in enumerate(batches):
        if progress:
            progress(f"active set: batch {number + 1}/{len(batches)}")
        found = per_element_projections(potential, [structures[k] for k in batch], mode,
                                        num_threads, evaluator)
        for e, (rows, structure_index, atom_index) in found.items():
            where = np.stack([structure_index + batch.start, atom_index], axis=1)
            pending[e][0].append(rows)
            pending[e][1].append(where)
            if len(active[e]) + sum(len(r) for r in pending[e][0]) >= widths[e]:
                select(e, np.vstack(pending[e][0]), np.vstack(pending[e][1]))
                pending[e] = ([], [])
    result = ActiveSet(elements, mode, {elements[e]: active[e] for e in widths},
                       potential_fingerprint(potential), tolerance,
                       {elements[e]: origins[e] for e in widths})
    if len(batches) == 1 and all(largest.get(e, np.inf) <= tolerance for e in widths):
        # one MaxVol saw every atom of every element and left them all within the tolerance:
        # a refinement pass could find nothing to add
        refinement_passes = 0
    for _ in range(refinement_passes):
        outside = {e: ([], []) for e in widths}
        for batch in batches:
            found = per_element_projections(potential, [structures[k] for k in batch], mode,
                                            num_threads, evaluator)
            for e, (rows, structure_index, atom_index) in found.items():
                if len(rows) == 0:
                    continue
                gamma = np.abs(rows @ result.inverses[elements[e]]).max(axis=1, initial=0.0)
                keep = gamma > tolerance
                outside[e][0].append(rows[keep])
                outside[e][1].append(np.stack([structure_index[keep] + batch.start,
                                               atom_index[keep]], axis=1))
        changed = False
        for e, (rows, where) in outside.items():
            if rows and sum(len(r) for r in rows):
                select(e, np.vstack(rows), np.vstack(where))
                changed = True
        if not changed:
            break
        result = ActiveSet(elements, mode, {elements[e]: active[e] for e in widths},
                           potential_fingerprint(potential), tolerance,
                           {elements[e]: origins[e] for e in widths})
    return result


def structure_gamma(potential, active_set, atoms, num_threads=None, evaluator=None):
    """Per-atom gamma of one ASE Atoms (checks that the active set belongs to the potential)."""
    from ace.evaluator import Structure
    from ace.uncertainty.projections import structure_projections
    active_set.check(potential)
    evaluator = evaluator or Evaluator(potential)
    structure = Structure.from_atoms(potential, atoms)
    rows = structure_projections(evaluator, structure, active_set.mode, num_threads=num_threads)
    return active_set.gamma(rows, structure.species, num_threads)
