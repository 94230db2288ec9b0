"""ACEPotential: basis + coefficients + E0 + embeddings + core repulsion + metadata, and its file.

The file is YAML read with ``yaml.safe_load`` only (never pickle or eval). Its first line carries
a SHA-256 checksum of the rest, so truncation or tampering is detected; writes are atomic
(temporary file in the same directory, then rename).
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np
import yaml
from ase.data import atomic_numbers

from ace.basis.coupling import valid_intermediates
from ace.basis.model import (EMBEDDINGS, INNER_CUTOFF_TYPES, RADIAL_FAMILIES, BFunction, Bond,
                             Embedding)
from ace.limits import (BOND_INTEGER_LIMITS, MAX_FUNCTIONS, LimitError, check_cutoff,
                        check_integer, check_magnitude, read_text_file, yaml_load_bounded)

FORMAT_NAME = "ace-potential"
FORMAT_VERSION = 1
CHECKSUM_PREFIX = "# ace-potential sha256="
UNITS = {"energy": "eV", "length": "Angstrom"}

try:  # the C loader/dumper is much faster on large files; both are "safe" variants
    SafeLoader = yaml.CSafeLoader
    SafeDumper = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - libyaml missing
    SafeLoader = yaml.SafeLoader
    SafeDumper = yaml.SafeDumper


class PotentialFileError(ValueError):
    """A potential file is malformed, truncated, tampered with or inconsistent."""


class Committee:
    """Members of a linear potential's committee: coefficients [K, n_functions] (one density)
    and E0 [K, n_elements], with how they were made (``info``: JSON-friendly)."""

    def __init__(self, coefficients, e0, info=None):
        self.coefficients = np.array(coefficients, dtype=float)
        self.e0 = np.array(e0, dtype=float)
        self.info = dict(info or {})

    @property
    def n_members(self):
        return len(self.coefficients)

    def to_dict(self):
        return {"members": self.n_members, "coefficients": self.coefficients.tolist(),
                "e0": self.e0.tolist(), "info": self.info}


class ACEPotential:
    """An ACE potential: E_i = E0(mu_i) + F(rho_1..rho_P) (blended with core repulsion).

    ``functions`` are the B-functions (sorted by central element), ``coefficients`` has shape
    [n_functions, max ndensity] (entries beyond an element's ndensity are zero).
    """

    def __init__(self, elements, bonds, embeddings, functions, coefficients=None, e0=None,
                 basis_spec=None, min_distance=0.0, metadata=None, committee=None):
        self.elements = [str(e) for e in elements]
        self.bonds = dict(bonds)
        self.embeddings = dict(embeddings)
        self.functions = list(functions)
        self.ndensity_max = max(emb.ndensity for emb in self.embeddings.values())
        if coefficients is None:
            coefficients = np.zeros((len(self.functions), self.ndensity_max))
        self.coefficients = np.array(coefficients, dtype=float).reshape(
            len(self.functions), self.ndensity_max)
        self.e0 = np.zeros(len(self.elements)) if e0 is None else np.array(e0, dtype=float)
        self.basis_spec = basis_spec
        self.min_distance = float(min_distance)
        self.metadata = dict(metadata or {})
        self.committee = committee  # a Committee (linear fits: Bayesian posterior samples)
        self.validate()

    # ----------------------------------------------------------------------------- structure
    @classmethod
    def from_basis(cls, basis, coefficients=None, **kwargs):
        """A potential on an ``ace.basis.ACEBasis`` (from ``build_basis``)."""
        spec = kwargs.pop("basis_spec", getattr(basis, "spec", None))
        if spec is not None and hasattr(spec, "to_dict"):
            spec = spec.to_dict()
        return cls(basis.elements, basis.bonds, basis.embeddings, basis.functions,
                   coefficients, basis_spec=spec, **kwargs)

    @property
    def n_functions(self):
        return len(self.functions)

    @property
    def cutoff(self):
        """The largest bond cutoff: the neighbour-list cutoff."""
        return max(b.rcut for b in self.bonds.values())

    @property
    def inner_cutoff_type(self):
        return next(iter(self.bonds.values())).inner_cutoff_type

    @property
    def has_core_repulsion(self):
        """True if some bond has a nonzero core-repulsion prefactor (ZBL or exponential)."""
        return any(b.core_repulsion[0] != 0 for b in self.bonds.values())

    def counts(self):
        """Number of functions per element and correlation order: {element: {rank: n}}."""
        out = {e: {} for e in self.elements}
        for f in self.functions:
            per = out[self.elements[f.mu0]]
            per[f.rank] = per.get(f.rank, 0) + 1
        return out

    def copy(self):
        return ACEPotential.from_dict(self.to_dict())

    def __repr__(self):
        orders = {e: dict(sorted(c.items())) for e, c in self.counts().items()}
        return (f"ACEPotential(elements={self.elements}, n_functions={self.n_functions}, "
                f"cutoff={self.cutoff:g}, functions_per_order={orders})")

    def validate(self):
        """Check internal consistency; raise PotentialFileError naming the problem."""
        _validate(self)

    # ----------------------------------------------------------------------------- file format
    def to_dict(self):
        el = self.elements
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "units": dict(UNITS),
            "elements": list(el),
            "e0": {e: float(v) for e, v in zip(el, self.e0)},
            "min_distance": self.min_distance,
            "basis_spec": self.basis_spec,
            "embeddings": {el[i]: _embedding_to_dict(emb) for i, emb in sorted(self.embeddings.items())},
            "bonds": [_bond_to_dict(el, pair, bond) for pair, bond in sorted(self.bonds.items())],
            "functions": [[f.mu0, list(f.mus), list(f.ns), list(f.ls), list(f.LS),
                           [float(c) for c in coef[:self.embeddings[f.mu0].ndensity]]]
                          for f, coef in zip(self.functions, self.coefficients)],
            "metadata": self.metadata,
            **({"committee": self.committee.to_dict()} if self.committee is not None else {}),
        }

    @classmethod
    def from_dict(cls, data):
        try:
            return _potential_from_dict(cls, data)
        except PotentialFileError:
            raise
        except LimitError as exc:
            raise PotentialFileError(f"potential: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise PotentialFileError(f"malformed potential data: {type(exc).__name__}: {exc}") from exc

    def save(self, path):
        """Write atomically: a temporary file in the same directory, then rename."""
        write_checksummed(path, CHECKSUM_PREFIX, self.to_dict())

    @classmethod
    def load(cls, path):
        """Load and validate a potential file (ours; PACE files go through ace.pace)."""
        path = os.fspath(path)
        body = read_checksummed(path, CHECKSUM_PREFIX, PotentialFileError, "ace potential")
        data = yaml_load_bounded(body, SafeLoader, path, PotentialFileError)
        if not isinstance(data, dict):
            raise PotentialFileError(f"{path}: the file does not hold a mapping")
        try:
            return cls.from_dict(data)
        except PotentialFileError as exc:
            raise PotentialFileError(f"{path}: {exc}") from exc


def read_checksummed(path, prefix, error, what):
    """The body of one of ace's checksummed files (a first line ``prefix`` + the SHA-256 of the
    rest: potentials, active sets), read within ace.limits' bounds; ``error`` names the file."""
    text = read_text_file(path, error, f"{what} file")
    first, _, body = text.partition("\n")
    if not first.startswith(prefix):
        raise error(f"{path}: not an {what} file (missing the '{prefix}...' first line)")
    if first[len(prefix):].strip() != _sha256(body):
        raise error(f"{path}: checksum mismatch: the file is truncated or was modified after "
                    "it was written")
    return body


def write_checksummed(path, prefix, data):
    """Write ``data`` as YAML (the C dumper: the pure-Python one takes tens of seconds on a
    large file) atomically under the first line ``prefix`` + the body's SHA-256."""
    body = yaml.dump(data, Dumper=SafeDumper, sort_keys=False, default_flow_style=None,
                     width=120)
    write_atomic(path, f"{prefix}{_sha256(body)}\n{body}")


def write_atomic(path, text):
    """Write text (str, or bytes) to path via a temporary file in the same directory and a
    rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        # mkstemp makes the file private (0600); a potential file gets the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # name the file asked for, not the temporary one
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def _sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _embedding_to_dict(emb):
    return {"ndensity": emb.ndensity, "npot": emb.npot,
            "fs_parameters": [float(x) for x in emb.fs_parameters],
            "rho_core_cut": float(emb.rho_core_cut), "drho_core_cut": float(emb.drho_core_cut)}


def _bond_to_dict(elements, pair, bond):
    return {"pair": [elements[pair[0]], elements[pair[1]]], "radbase": bond.radbase,
            "radparameters": list(bond.radparameters), "rcut": float(bond.rcut),
            "dcut": float(bond.dcut), "nradbase": bond.nradbase, "nradmax": bond.nradmax,
            "lmax": bond.lmax, "r_in": float(bond.r_in), "delta_in": float(bond.delta_in),
            "inner_cutoff_type": bond.inner_cutoff_type,
            "core_repulsion": list(bond.core_repulsion),
            "crad": bond.crad.tolist()}


def _require(data, key, kind, where):
    if key not in data:
        raise PotentialFileError(f"{where}: missing key '{key}'")
    value = data[key]
    if not isinstance(value, kind):
        raise PotentialFileError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, "
                                 f"got {type(value).__name__}")
    return value


def _potential_from_dict(cls, data):
    where = "potential"
    if data.get("format") != FORMAT_NAME:
        raise PotentialFileError(f"{where}: 'format' must be '{FORMAT_NAME}'")
    version = _require(data, "format_version", int, where)
    if isinstance(version, bool) or version < 1:
        raise PotentialFileError(f"{where}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise PotentialFileError(f"{where}: format_version {version} is newer than this ace "
                                 f"({FORMAT_VERSION}); upgrade ace")
    units = data.get("units", UNITS)
    if units != UNITS:
        raise PotentialFileError(f"{where}: units {units} are not supported (need {UNITS})")
    elements = _require(data, "elements", list, where)
    index = {e: i for i, e in enumerate(elements)}
    e0_map = _require(data, "e0", dict, where)
    if set(e0_map) != set(elements):
        raise PotentialFileError(f"{where}: 'e0' must name exactly the elements {elements}")
    embeddings = {}
    for name, emb in _require(data, "embeddings", dict, where).items():
        if name not in index:
            raise PotentialFileError(f"{where}: embedding for unknown element '{name}'")
        embeddings[index[name]] = Embedding(int(emb["ndensity"]), str(emb["npot"]),
                                            [float(x) for x in emb["fs_parameters"]],
                                            float(emb["rho_core_cut"]), float(emb["drho_core_cut"]))
    bonds = {}
    for b in _require(data, "bonds", list, where):
        pair = tuple(index[e] if e in index else _unknown(e, where) for e in b["pair"])
        if pair in bonds:
            raise PotentialFileError(f"{where}: bond {b['pair']} is given twice")
        # sizes bounded before the coefficients are read (a few bytes can ask for terabytes)
        sizes = {key: check_integer(b[key], limit, f"bond {b['pair']}: {key}", error=LimitError)
                 for key, limit in BOND_INTEGER_LIMITS.items()}
        crad = np.array(b["crad"], dtype=float)
        shape = (sizes["nradmax"], sizes["lmax"] + 1, sizes["nradbase"])
        if crad.size == 0 and 0 in shape:  # an empty nested list loses its inner shape
            crad = crad.reshape(shape)
        if crad.shape != shape:
            raise PotentialFileError(f"{where}: bond {b['pair']}: crad has shape {crad.shape}, "
                                     f"expected {shape}")
        bonds[pair] = Bond(str(b["radbase"]), b["radparameters"], float(b["rcut"]),
                           float(b["dcut"]), shape[2], shape[0], shape[1] - 1, crad,
                           float(b["r_in"]), float(b["delta_in"]), str(b["inner_cutoff_type"]),
                           tuple(b["core_repulsion"]))
    functions, coefficients = [], []
    ndmax = max((e.ndensity for e in embeddings.values()), default=1)
    rows = _require(data, "functions", list, where)
    check_integer(len(rows), MAX_FUNCTIONS, f"{where}: number of functions", error=LimitError)
    for row in rows:
        mu0, mus, ns, ls, LS, coef = row
        if not all(isinstance(x, int) and not isinstance(x, bool)
                   for x in [mu0, *mus, *ns, *ls, *LS]):
            raise PotentialFileError(f"{where}: function {row[:5]}: indices must be integers")
        functions.append(BFunction(int(mu0), tuple(mus), tuple(ns), tuple(ls), tuple(LS)))
        if len(coef) != embeddings[int(mu0)].ndensity:
            raise PotentialFileError(f"{where}: function {row[:5]} has {len(coef)} coefficients, "
                                     f"its element has ndensity {embeddings[int(mu0)].ndensity}")
        coefficients.append(list(coef) + [0.0] * (ndmax - len(coef)))
    return cls(elements, bonds, embeddings, functions,
               np.array(coefficients, dtype=float).reshape(len(functions), ndmax),
               e0=[float(e0_map[e]) for e in elements], basis_spec=data.get("basis_spec"),
               min_distance=float(data.get("min_distance", 0.0)),
               metadata=data.get("metadata") or {},
               committee=_committee_from_dict(data.get("committee"), where))


def _committee_from_dict(data, where):
    """The optional committee section (absent in files without one)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise PotentialFileError(f"{where}: 'committee' must be a mapping")
    members = _require(data, "members", int, f"{where}: committee")
    committee = Committee(np.array(_require(data, "coefficients", list, f"{where}: committee"),
                                   dtype=float),
                          np.array(_require(data, "e0", list, f"{where}: committee"), dtype=float),
                          data.get("info") or {})
    if committee.n_members != members:
        raise PotentialFileError(f"{where}: committee says {members} members but holds "
                                 f"{committee.n_members}")
    return committee


def _unknown(element, where):
    raise PotentialFileError(f"{where}: bond names unknown element '{element}'")


def _validate(pot):
    where = "potential"
    n_el = len(pot.elements)
    if n_el == 0:
        raise PotentialFileError(f"{where}: no elements")
    for e in pot.elements:
        if e not in atomic_numbers:
            raise PotentialFileError(f"{where}: '{e}' is not a chemical element")
    if sorted(pot.elements) != pot.elements or len(set(pot.elements)) != n_el:
        raise PotentialFileError(f"{where}: elements must be unique and sorted alphabetically, "
                                 f"got {pot.elements}")
    if set(pot.embeddings) != set(range(n_el)):
        raise PotentialFileError(f"{where}: need one embedding per element")
    for i, emb in pot.embeddings.items():
        if emb.npot not in EMBEDDINGS:
            raise PotentialFileError(f"{where}: element {pot.elements[i]}: unknown embedding "
                                     f"'{emb.npot}' (known: {', '.join(EMBEDDINGS)})")
        if not np.all(np.isfinite(emb.fs_parameters)):
            raise PotentialFileError(f"{where}: element {pot.elements[i]}: fs_parameters must be finite")
        if emb.ndensity < 1 or len(emb.fs_parameters) != 2 * emb.ndensity:
            raise PotentialFileError(f"{where}: element {pot.elements[i]}: fs_parameters must have "
                                     f"2 * ndensity = {2 * emb.ndensity} entries")
    pairs = {(i, j) for i in range(n_el) for j in range(n_el)}
    if set(pot.bonds) != pairs:
        missing = sorted(pairs - set(pot.bonds))
        raise PotentialFileError(f"{where}: bonds missing for element pairs {missing}")
    types = {b.inner_cutoff_type for b in pot.bonds.values()}
    if len(types) != 1:
        raise PotentialFileError(f"{where}: all bonds must share one inner_cutoff_type, got {types}")
    for (i, j), b in pot.bonds.items():
        name = f"{where}: bond {pot.elements[i]}-{pot.elements[j]}"
        if b.radbase not in RADIAL_FAMILIES:
            raise PotentialFileError(f"{name}: unknown radial basis '{b.radbase}' "
                                     f"(known: {', '.join(RADIAL_FAMILIES)})")
        if b.inner_cutoff_type not in INNER_CUTOFF_TYPES:
            raise PotentialFileError(f"{name}: unknown inner_cutoff_type '{b.inner_cutoff_type}'")
        if not (b.rcut > 0 and np.isfinite(b.rcut)):
            raise PotentialFileError(f"{name}: rcut must be positive and finite, got {b.rcut}")
        if len(b.radparameters) < 1 or not np.all(np.isfinite(b.radparameters)):
            raise PotentialFileError(f"{name}: radparameters must hold at least one finite value")
        if not (b.dcut >= 0 and b.r_in >= 0 and b.delta_in >= 0
                and np.all(np.isfinite([b.dcut, b.r_in, b.delta_in]))):
            raise PotentialFileError(f"{name}: dcut, r_in and delta_in must be finite and >= 0")
        if len(b.core_repulsion) != 2 or not np.all(np.isfinite(b.core_repulsion)):
            raise PotentialFileError(f"{name}: core_repulsion must be two finite numbers "
                                     "[prefactor, lambda]")
        if not np.all(np.isfinite(b.crad)):
            raise PotentialFileError(f"{name}: crad contains NaN or inf")
        if b.nradbase < 1 or b.nradmax < 0 or b.lmax < 0:
            raise PotentialFileError(f"{name}: nradbase must be >= 1, nradmax and lmax >= 0")
        _within_limits(name, b)
    for f in pot.functions:
        _validate_function(pot, f)
    if any(pot.functions[k].mu0 > pot.functions[k + 1].mu0 for k in range(len(pot.functions) - 1)):
        raise PotentialFileError(f"{where}: functions must be sorted by central element")
    if not (np.isfinite(pot.min_distance) and pot.min_distance >= 0):
        raise PotentialFileError(f"{where}: min_distance must be finite and >= 0")
    if not np.all(np.isfinite(pot.coefficients)):
        raise PotentialFileError(f"{where}: coefficients contain NaN or inf")
    if pot.e0.shape != (n_el,) or not np.all(np.isfinite(pot.e0)):
        raise PotentialFileError(f"{where}: e0 must hold one finite value per element")
    try:
        check_integer(len(pot.functions), MAX_FUNCTIONS, f"{where}: number of functions")
        check_magnitude(pot.coefficients, f"{where}: coefficients")
        check_magnitude(pot.e0, f"{where}: e0")
        for i, emb in pot.embeddings.items():
            check_magnitude([*emb.fs_parameters, emb.rho_core_cut, emb.drho_core_cut],
                            f"{where}: element {pot.elements[i]}: embedding parameters")
    except LimitError as exc:
        raise PotentialFileError(str(exc)) from None
    if pot.committee is not None:
        _validate_committee(pot)


def _validate_committee(pot):
    c = pot.committee
    k = c.n_members
    if k < 2:
        raise PotentialFileError(f"potential: committee needs at least 2 members, got {k}")
    if pot.ndensity_max != 1:
        raise PotentialFileError("potential: a committee needs a one-density (linear) potential")
    if c.coefficients.shape != (k, pot.n_functions):
        raise PotentialFileError(f"potential: committee coefficients have shape "
                                 f"{c.coefficients.shape}, expected {(k, pot.n_functions)}")
    if c.e0.shape != (k, len(pot.elements)):
        raise PotentialFileError(f"potential: committee e0 has shape {c.e0.shape}, expected "
                                 f"{(k, len(pot.elements))}")
    if not (np.all(np.isfinite(c.coefficients)) and np.all(np.isfinite(c.e0))):
        raise PotentialFileError("potential: committee contains NaN or inf")


def _within_limits(name, bond):
    """The bond's sizes, cutoff and parameters within ace.limits (checked before any use)."""
    try:
        for key, limit in BOND_INTEGER_LIMITS.items():
            check_integer(getattr(bond, key), limit, f"{name}: {key}")
        check_cutoff(bond.rcut, f"{name}: rcut")
        check_magnitude(bond.crad, f"{name}: crad")
        check_magnitude([*bond.radparameters, bond.dcut, bond.r_in, bond.delta_in,
                         *bond.core_repulsion], f"{name}: radial parameters")
    except LimitError as exc:
        raise PotentialFileError(str(exc)) from None


def _validate_function(pot, f):
    n_el = len(pot.elements)
    rank = len(f.mus)
    bad = None
    if not (0 <= f.mu0 < n_el) or rank == 0 or len(f.ns) != rank or len(f.ls) != rank:
        bad = "inconsistent lengths or central element"
    elif any(not (0 <= mu < n_el) for mu in f.mus):
        bad = "species index out of range"
    elif len(f.LS) != max(rank - 2, 0):
        bad = f"needs {max(rank - 2, 0)} intermediate couplings LS"
    elif sum(f.ls) % 2:
        bad = "sum of l must be even"
    elif rank > 1 and tuple(f.LS) not in valid_intermediates(f.ls):
        bad = f"LS={tuple(f.LS)} is not a valid coupling of ls={tuple(f.ls)}"
    elif rank == 1:
        if f.ls[0] != 0 or not 0 <= f.ns[0] < pot.bonds[(f.mu0, f.mus[0])].nradbase:
            bad = "rank-1 function needs l = 0 and n < nradbase"
    else:
        for mu, n, l in zip(f.mus, f.ns, f.ls):
            bond = pot.bonds[(f.mu0, mu)]
            if not (0 <= n < bond.nradmax and 0 <= l <= bond.lmax):
                bad = f"n={n}, l={l} outside the bond's nradmax={bond.nradmax}, lmax={bond.lmax}"
    if bad:
        raise PotentialFileError(f"potential: function {f}: {bad}")
