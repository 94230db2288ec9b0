"""The basis specification (pacemaker's ``potential:`` dict) and the enumeration of B-functions.

Input format (pacemaker's ``potential:`` section; docs/model.md, section 5)::

    {"deltaSplineBins": 0.001,                       # optional
     "elements": ["Al", "Ni"],                        # sorted alphabetically: species index
     "embeddings": {"ALL" | "UNARY" | "<El>": {npot, fs_parameters, ndensity,
                                                rho_core_cut, drho_core_cut}},
     "bonds": {"ALL" | "UNARY" | "BINARY" | "<pair>": {radbase, radparameters, rcut, dcut,
               r_in, delta_in, inner_cutoff_type, core-repulsion, nradbase?, nradmax?, lmax?}},
     "functions": {"number_of_functions_per_element": 700,          # optional cap
                   "ALL" | "UNARY" | ... | "QUINARY" | "<block>":
                       {nradmax_by_orders, lmax_by_orders, max_degree?}}}

Keys and their meaning:

* Later keys override earlier ones field by field: ALL < UNARY < BINARY < ... < explicit.
* A pair key ("AlNi", "Al Ni", "Al-Ni", ("Al", "Ni"); "Al" means Al-Al) applies to both
  orders of the pair: bonds are symmetric.
* A block is a central element plus the set of the other elements its neighbours must include,
  as in pacemaker: block "Al Ni" holds the functions of central Al whose neighbour species are
  drawn from {Al, Ni} with at least one Ni. The first element of an explicit block key is the
  central one. UNARY/BINARY/... select the blocks with 1/2/... distinct elements.
* ``nradmax_by_orders[K-1]`` bounds the radial index n (0-based n < nradmax) of rank-K
  functions (rank 1: n indexes the radial base g_k, and l = 0); ``lmax_by_orders[K-1]`` bounds
  l for K >= 2 (``lmax_by_orders[0]`` must be 0).
* ``max_degree`` (our addition) is a total-degree budget: a function is kept only if its
  degree D = Σ_t (n_t + 1) + Σ_t l_t is at most ``max_degree`` (one number for every rank, or
  a list per rank). With a list, ``nradmax_by_orders``/``lmax_by_orders`` may be omitted; they
  then default to the widest values the budget allows (n + 1 + l <= D - K + 1 per factor).
* ``number_of_functions_per_element`` keeps, for each central element, the functions of lowest
  pacemaker "power order" p = rank + Σ(n+1) + Σl (ties: rank, species, n, l, LS). Like
  pacemaker, the quota is shared evenly between the element's blocks; unlike pacemaker, a
  block with fewer functions than its share passes the rest on to the others, so each element
  gets exactly min(cap, available) functions.
* Bonds: nradbase / nradmax / lmax are the largest rank-1 nradmax / rank >= 2 nradmax /
  rank >= 2 lmax over the blocks whose functions use the pair (either order), or the explicit
  values if larger; crad is initialised to pacemaker's "delta" crad[n, l, k] = δ_nk.
* Accepted and ignored (pacemaker legacy): bonds' ``NameOfCutoffFunction``, functions'
  ``coefs_init``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations, combinations_with_replacement, groupby, islice, product
import re

import numpy as np

from ace.basis.coupling import MAX_RANK, independent_couplings, max_lmax
from ace.basis.model import (
    EMBEDDINGS, INNER_CUTOFF_TYPES, RADIAL_FAMILIES, BFunction, Bond, Embedding)

ALL = "ALL"
NARY = {"UNARY": 1, "BINARY": 2, "TERNARY": 3, "QUATERNARY": 4, "QUINARY": 5}
CAP_KEY = "number_of_functions_per_element"

CHEMICAL_SYMBOLS = frozenset("""
H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br
Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho
Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es
Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og""".split())

EMBEDDING_DEFAULTS = {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                      "rho_core_cut": 100000.0, "drho_core_cut": 250.0}
BOND_DEFAULTS = {"dcut": 0.01, "r_in": 0.0, "delta_in": 0.0, "inner_cutoff_type": "distance",
                 "core-repulsion": [0.0, 0.0]}
IGNORED_BOND_KEYS = ("NameOfCutoffFunction",)
IGNORED_FUNCTION_KEYS = ("coefs_init",)
TOP_LEVEL_KEYS = ("deltaSplineBins", "elements", "embeddings", "bonds", "functions")


# ---------------------------------------------------------------- value checks

def _int(value, where, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {value}")
    return int(value)


def _float(value, where, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {value}")
    return float(value)


def _positive(value, where):
    value = _float(value, where)
    if value <= 0:
        raise ValueError(f"{where}: must be > 0, got {value}")
    return value


def _list(value, where, item, length=None):
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    items = [item(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if length is not None and len(items) != length:
        raise ValueError(f"{where}: expected {length} values, got {len(items)}")
    return items


def _nonempty(items, where):
    if not items:
        raise ValueError(f"{where}: needs at least one value")
    return items


def _choice(value, where, choices):
    if value not in choices:
        raise ValueError(f"{where}: unknown value {value!r} (expected one of {list(choices)})")
    return value


def _orders(value, where):
    orders = _list(value, where, _int)
    if not 1 <= len(orders) <= MAX_RANK:
        raise ValueError(f"{where}: {len(orders)} orders given; between 1 and {MAX_RANK} supported")
    return orders


def _degree(value, where):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return _int(value, where)
    return _orders(value, where)


EMBEDDING_FIELDS = {
    "npot": lambda v, w: _choice(v, w, EMBEDDINGS),
    "ndensity": lambda v, w: _int(v, w, 1),
    "fs_parameters": lambda v, w: _nonempty(_list(v, w, _float), w),
    "rho_core_cut": lambda v, w: _float(v, w, 0.0),
    "drho_core_cut": lambda v, w: _float(v, w, 0.0),
}
BOND_FIELDS = {
    "radbase": lambda v, w: _choice(v, w, RADIAL_FAMILIES),
    "radparameters": lambda v, w: _nonempty(_list(v, w, _float), w),
    "rcut": _positive,
    "dcut": lambda v, w: _float(v, w, 0.0),
    "r_in": lambda v, w: _float(v, w, 0.0),
    "delta_in": lambda v, w: _float(v, w, 0.0),
    "inner_cutoff_type": lambda v, w: _choice(v, w, INNER_CUTOFF_TYPES),
    "core-repulsion": lambda v, w: _list(v, w, _float, length=2),
    "nradbase": _int,
    "nradmax": _int,
    "lmax": _int,
}
FUNCTION_FIELDS = {
    "nradmax_by_orders": _orders,
    "lmax_by_orders": _orders,
    "max_degree": _degree,
}


def _fields(settings, allowed, where, ignored=()):
    """Check every key of one settings dict and normalise its values."""
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: expected a dict of settings, got {settings!r}")
    normalised = {}
    for key, value in settings.items():
        if key in ignored:
            continue
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r} (allowed: {sorted(allowed)})")
        normalised[key] = allowed[key](value, f"{where}[{key!r}]")
    return normalised


# ---------------------------------------------------------------- keys

_SYMBOL = re.compile(r"[A-Z][a-z]?")


def _key_elements(key, where, elements) -> list:
    """Element names of a key: "AlNi", "Al Ni", "Al-Ni", "(Al,Ni)" or a tuple/list."""
    if isinstance(key, str):
        names = _SYMBOL.findall(key)
        if "".join(names) != re.sub(r"[\s,()\-\[\]'\"]", "", key):
            raise ValueError(f"{where}: cannot read element names from key {key!r}")
    elif isinstance(key, (tuple, list)):
        names = list(key)
    else:
        raise ValueError(f"{where}: unreadable key {key!r}")
    for name in names:
        if name not in elements:
            raise ValueError(f"{where}: unknown element {name!r} in key {key!r} "
                             f"(elements: {elements})")
    if not names:
        raise ValueError(f"{where}: empty key {key!r}")
    return names


def _pair_key(key, elements) -> str:
    names = _key_elements(key, "bonds", elements)
    if len(names) > 2:
        raise ValueError(f"bonds: key {key!r} names more than two elements")
    return " ".join(sorted(names * 2 if len(names) == 1 else names))


def _block_key(key, elements) -> str:
    central, *others = _key_elements(key, "functions", elements)
    return " ".join([central] + sorted(set(others) - {central}))


def _merge(section: dict, keys) -> dict:
    """Merge the settings of ``keys`` in order (later keys override field by field)."""
    merged = {}
    for key in keys:
        merged.update(section.get(key, {}))
    return merged


# ---------------------------------------------------------------- sections

def _elements(value) -> list:
    names = _list(value, "elements", lambda v, w: v)
    if not names:
        raise ValueError("elements: at least one element is needed")
    for name in names:
        if name not in CHEMICAL_SYMBOLS:
            raise ValueError(f"elements: unknown element {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"elements: duplicated names in {names}")
    return sorted(names)


def _section(raw, name, elements, keywords, canonical_key, allowed, ignored=()) -> dict:
    """Normalise one keyed section: keyword keys stay, element keys become canonical strings."""
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: expected a dict, got {raw!r}")
    section = {}
    for key, settings in raw.items():
        canonical = key if key in keywords else canonical_key(key, elements)
        if canonical in section:
            raise ValueError(f"{name}: settings for {canonical!r} given twice (key {key!r})")
        section[canonical] = _fields(settings, allowed, f"{name}[{key!r}]", ignored)
    return section


def _embedding_key(key, elements):
    if key not in elements:
        raise ValueError(f"embeddings: unknown element or keyword {key!r} (elements: {elements})")
    return key


def _functions_section(raw, elements):
    if not isinstance(raw, dict):
        raise ValueError(f"functions: expected a dict, got {raw!r}")
    raw = dict(raw)
    cap = raw.pop(CAP_KEY, None)
    if cap is not None:
        cap = _int(cap, f"functions[{CAP_KEY!r}]", minimum=1)
    section = _section(raw, "functions", elements, (ALL, *NARY), _block_key, FUNCTION_FIELDS,
                       IGNORED_FUNCTION_KEYS)
    return section, cap


# ---------------------------------------------------------------- resolved block settings

@dataclass(frozen=True)
class BlockOrders:
    """Per-rank bounds of one block: n < nradmax[K-1], l <= lmax[K-1], degree <= max_degree."""

    nradmax: tuple
    lmax: tuple
    max_degree: tuple | None = None

    @property
    def max_rank(self) -> int:
        return len(self.nradmax)

    def entries(self, rank: int) -> list:
        """The (n, l) values allowed for one factor of a rank-``rank`` function."""
        lmax = 0 if rank == 1 else self.lmax[rank - 1]
        return [(n, l) for n in range(self.nradmax[rank - 1]) for l in range(lmax + 1)]

    def allows(self, ns, ls) -> bool:
        if self.max_degree is None:
            return True
        return sum(ns) + len(ns) + sum(ls) <= self.max_degree[len(ns) - 1]


def _orders_from_degree(degree) -> tuple:
    """Widest n/l bounds a per-rank degree budget allows (each factor costs n + 1 + l)."""
    nradmax = [max(d - rank + 1, 0) for rank, d in enumerate(degree, 1)]
    lmax = [0] + [max(min(d - rank, max_lmax(rank)), 0) for rank, d in enumerate(degree, 1)][1:]
    return nradmax, lmax


def _block_orders(settings, where) -> BlockOrders:
    nradmax = settings.get("nradmax_by_orders")
    lmax = settings.get("lmax_by_orders")
    degree = settings.get("max_degree")
    if nradmax is None and lmax is None and isinstance(degree, list):
        nradmax, lmax = _orders_from_degree(degree)
    if nradmax is None or lmax is None:
        raise ValueError(f"{where}: needs nradmax_by_orders and lmax_by_orders "
                         f"(or max_degree as a list per order)")
    if len(nradmax) != len(lmax):
        raise ValueError(f"{where}: nradmax_by_orders {nradmax} and lmax_by_orders {lmax} "
                         f"differ in length")
    if lmax[0] != 0:
        raise ValueError(f"{where}: lmax_by_orders[0] must be 0 (rank-1 functions have l = 0)")
    for rank, l in enumerate(lmax[1:], 2):
        if l > max_lmax(rank):
            raise ValueError(f"{where}: lmax_by_orders[{rank - 1}] = {l} is beyond the "
                             f"Clebsch-Gordan table (at most {max_lmax(rank)} at rank {rank})")
    if isinstance(degree, int):
        degree = [degree] * len(nradmax)
    if degree is not None and len(degree) != len(nradmax):
        raise ValueError(f"{where}: max_degree {degree} does not have one value per order")
    return BlockOrders(tuple(nradmax), tuple(lmax), None if degree is None else tuple(degree))


@dataclass(frozen=True)
class SpeciesBlock:
    """Central species and the species set its functions' neighbours must cover exactly."""

    central: int
    members: tuple  # sorted species indices, including the central one
    orders: BlockOrders

    def neighbour_species(self, rank: int):
        """Sorted species tuples of ``rank`` neighbours that belong to this block."""
        needed = set(self.members)
        for mus in combinations_with_replacement(self.members, rank):
            if set(mus) | {self.central} == needed:
                yield mus


# ---------------------------------------------------------------- the specification

@dataclass
class BasisSpec:
    """A validated basis specification; keyed sections hold normalised settings.

    Build with :meth:`from_dict`; :meth:`to_dict` gives back an equivalent dict in the same
    (pacemaker ``potential:``) format, with keys in canonical form.
    """

    elements: list
    embeddings: dict = field(default_factory=dict)
    bonds: dict = field(default_factory=dict)
    functions: dict = field(default_factory=dict)
    number_of_functions_per_element: int | None = None
    delta_spline_bins: float = 0.001

    @classmethod
    def from_dict(cls, config: dict) -> "BasisSpec":
        if not isinstance(config, dict):
            raise ValueError(f"basis specification: expected a dict, got {config!r}")
        unknown = sorted(set(config) - set(TOP_LEVEL_KEYS), key=str)
        if unknown:
            raise ValueError(f"basis specification: unknown key(s) {unknown} "
                             f"(allowed: {list(TOP_LEVEL_KEYS)})")
        elements = _elements(config.get("elements"))
        functions, cap = _functions_section(config.get("functions", {}), elements)
        spec = cls(
            elements=elements,
            embeddings=_section(config.get("embeddings", {}), "embeddings", elements,
                                (ALL, "UNARY"), _embedding_key, EMBEDDING_FIELDS),
            bonds=_section(config.get("bonds", {}), "bonds", elements, (ALL, "UNARY", "BINARY"),
                           _pair_key, BOND_FIELDS, IGNORED_BOND_KEYS),
            functions=functions,
            number_of_functions_per_element=cap,
            delta_spline_bins=_positive(config.get("deltaSplineBins", 0.001), "deltaSplineBins"),
        )
        spec.validate()
        return spec

    def to_dict(self) -> dict:
        functions = {key: _plain(value) for key, value in self.functions.items()}
        if self.number_of_functions_per_element is not None:
            functions[CAP_KEY] = self.number_of_functions_per_element
        return {
            "deltaSplineBins": self.delta_spline_bins,
            "elements": list(self.elements),
            "embeddings": {key: _plain(value) for key, value in self.embeddings.items()},
            "bonds": {key: _plain(value) for key, value in self.bonds.items()},
            "functions": functions,
        }

    def validate(self) -> None:
        """Resolve every embedding, bond and block once so that errors surface early."""
        for element in self.elements:
            self.embedding(element)
        for a in self.elements:
            for b in self.elements:
                self.bond_settings(a, b)
        if not self.blocks():
            raise ValueError("functions: no block has nradmax_by_orders/lmax_by_orders settings")

    def embedding(self, element: str) -> Embedding:
        settings = {**EMBEDDING_DEFAULTS,
                    **_merge(self.embeddings, (ALL, "UNARY", element))}
        ndensity = settings["ndensity"]
        fs = settings.get("fs_parameters", [1.0, 1.0] + [1.0, 0.5] * (ndensity - 1))
        if len(fs) != 2 * ndensity:
            raise ValueError(f"embeddings of {element}: fs_parameters {fs} must have "
                             f"2 * ndensity = {2 * ndensity} values")
        return Embedding(ndensity=ndensity, npot=settings["npot"], fs_parameters=list(fs),
                         rho_core_cut=settings["rho_core_cut"],
                         drho_core_cut=settings["drho_core_cut"])

    def bond_settings(self, a: str, b: str) -> dict:
        """Merged settings of the pair (a, b) with defaults filled in."""
        kind = "UNARY" if a == b else "BINARY"
        settings = {**BOND_DEFAULTS,
                    **_merge(self.bonds, (ALL, kind, " ".join(sorted((a, b)))))}
        for key in ("radbase", "radparameters", "rcut"):
            if key not in settings:
                raise ValueError(f"bonds: no {key!r} for the pair ({a}, {b}); give it under "
                                 f"ALL, {kind} or the pair key")
        return settings

    def blocks(self) -> list:
        """The species blocks that have function settings, in a fixed order."""
        blocks = []
        n = len(self.elements)
        for central in range(n):
            others = [i for i in range(n) if i != central]
            for size in range(n):
                for chosen in combinations(others, size):
                    block = self._block(central, chosen)
                    if block is not None:
                        blocks.append(block)
        return blocks

    def _block(self, central, others):
        names = [self.elements[central]] + [self.elements[i] for i in others]
        key = " ".join(names)
        nary = [k for k, size in NARY.items() if size == len(names)]
        sources = [k for k in (ALL, *nary, key) if k in self.functions]
        if not sources:
            return None
        where = f"functions block {key!r} (settings from {', '.join(sources)})"
        orders = _block_orders(_merge(self.functions, sources), where)
        return SpeciesBlock(central, tuple(sorted((central, *others))), orders)


def _plain(settings: dict) -> dict:
    """A copy with plain lists (YAML/JSON friendly)."""
    return {key: list(value) if isinstance(value, (list, tuple)) else value
            for key, value in settings.items()}


# ---------------------------------------------------------------- enumeration

def power_order(ns, ls) -> int:
    """pacemaker's ladder "power order" rank + Σ n + Σ l, with its 1-based n."""
    return len(ns) + sum(n + 1 for n in ns) + sum(ls)


def _entry_tuples(block: SpeciesBlock, rank: int):
    """Sorted (mus, ns, ls) tuples of one rank in ``block`` (Σl even, within the degree)."""
    entries = block.orders.entries(rank)
    for mus in block.neighbour_species(rank):
        runs = [len(list(run)) for _, run in groupby(mus)]
        # identical species are interchangeable: sorted (n, l) within each species run
        for parts in product(*(combinations_with_replacement(entries, k) for k in runs)):
            ns, ls = zip(*(entry for part in parts for entry in part))
            if sum(ls) % 2 == 0 and block.orders.allows(ns, ls):
                yield mus, ns, ls


def _block_stream(block: SpeciesBlock):
    """The block's B-functions, lowest power order first; couplings computed lazily."""
    tuples = sorted((power_order(ns, ls), len(ns), mus, ns, ls)
                    for rank in range(1, block.orders.max_rank + 1)
                    for mus, ns, ls in _entry_tuples(block, rank))
    for _, _, mus, ns, ls in tuples:
        for LS in independent_couplings(ls, list(zip(mus, ns, ls))):
            yield BFunction(block.central, mus, ns, ls, LS)


def _share_quota(streams, quota) -> list:
    """Take ``quota`` functions from the streams as evenly as possible.

    Each round splits what is left evenly over the streams not yet exhausted (the first
    ones get the remainder); a stream that runs dry passes its share on to the next round.
    """
    taken = [[] for _ in streams]
    active = list(range(len(streams)))
    remaining = quota
    while remaining > 0 and active:
        share, extra = divmod(remaining, len(active))
        still_active = []
        for position, i in enumerate(active):
            want = share + (position < extra)
            got = list(islice(streams[i], want))
            taken[i] += got
            remaining -= len(got)
            if len(got) == want:
                still_active.append(i)
        active = still_active
    return [f for block_functions in taken for f in block_functions]


def _function_order(f: BFunction) -> tuple:
    return f.mu0, f.rank, f.mus, f.ns, f.ls, f.LS


def enumerate_functions(spec: BasisSpec, blocks=None) -> list:
    """All B-functions of ``spec`` (capped per element if asked), in the canonical order."""
    blocks = spec.blocks() if blocks is None else blocks
    cap = spec.number_of_functions_per_element
    functions = []
    for mu0 in range(len(spec.elements)):
        streams = [_block_stream(block) for block in blocks if block.central == mu0]
        if cap is None:
            functions += [f for stream in streams for f in stream]
        else:
            functions += _share_quota(streams, cap)
    return sorted(functions, key=_function_order)


# ---------------------------------------------------------------- bonds

def _bond_sizes(blocks, n_elements) -> dict:
    """Largest (nradbase, nradmax, lmax) any block's functions may need, per ordered pair."""
    sizes = {(i, j): (0, 0, 0) for i in range(n_elements) for j in range(n_elements)}

    def need(a, b, size):
        for pair in ((a, b), (b, a)):
            sizes[pair] = tuple(map(max, sizes[pair], size))

    for block in blocks:
        orders = block.orders
        for rank in range(1, orders.max_rank + 1):
            if orders.nradmax[rank - 1] == 0:
                continue
            species = {mu for mus in block.neighbour_species(rank) for mu in mus}
            size = ((orders.nradmax[0], 0, 0) if rank == 1
                    else (0, orders.nradmax[rank - 1], orders.lmax[rank - 1]))
            for mu in species:
                need(block.central, mu, size)
    return sizes


def _delta_crad(nradmax, lmax, nradbase) -> np.ndarray:
    crad = np.zeros((nradmax, lmax + 1, nradbase))
    for n in range(min(nradmax, nradbase)):
        crad[n, :, n] = 1.0
    return crad


def build_bonds(spec: BasisSpec, blocks=None) -> dict:
    """Bond of every ordered species pair, sized for the blocks and delta-initialised."""
    blocks = spec.blocks() if blocks is None else blocks
    sizes = _bond_sizes(blocks, len(spec.elements))
    bonds = {}
    for (i, j), needed in sizes.items():
        settings = spec.bond_settings(spec.elements[i], spec.elements[j])
        nradbase, nradmax, lmax = (max(size, settings.get(key, 0)) for size, key
                                   in zip(needed, ("nradbase", "nradmax", "lmax")))
        bonds[(i, j)] = Bond(
            radbase=settings["radbase"], radparameters=settings["radparameters"],
            rcut=settings["rcut"], dcut=settings["dcut"],
            nradbase=nradbase, nradmax=nradmax, lmax=lmax,
            crad=_delta_crad(nradmax, lmax, nradbase),
            r_in=settings["r_in"], delta_in=settings["delta_in"],
            inner_cutoff_type=settings["inner_cutoff_type"],
            core_repulsion=tuple(settings["core-repulsion"]))
    return bonds


# ---------------------------------------------------------------- the basis

@dataclass(repr=False)
class ACEBasis:
    """An enumerated basis: species, bonds (all ordered pairs), embeddings and B-functions."""

    elements: list
    bonds: dict
    embeddings: dict
    functions: list
    spec: BasisSpec | None = None

    @property
    def n_functions(self) -> int:
        return len(self.functions)

    def counts(self) -> dict:
        """Number of functions per element and rank: {element: {rank: count}}."""
        counts = {element: {} for element in self.elements}
        for f in self.functions:
            per_rank = counts[self.elements[f.mu0]]
            per_rank[f.rank] = per_rank.get(f.rank, 0) + 1
        return {element: dict(sorted(c.items())) for element, c in counts.items()}

    def __repr__(self) -> str:
        per_element = ", ".join(f"{element}: {sum(c.values())} {c}"
                                for element, c in self.counts().items())
        return f"ACEBasis({self.n_functions} functions; {per_element})"


def build_basis(spec) -> ACEBasis:
    """Enumerate the basis of a :class:`BasisSpec` (or of a pacemaker-style dict)."""
    if not isinstance(spec, BasisSpec):
        spec = BasisSpec.from_dict(spec)
    blocks = spec.blocks()
    return ACEBasis(
        elements=list(spec.elements),
        bonds=build_bonds(spec, blocks),
        embeddings={i: spec.embedding(element) for i, element in enumerate(spec.elements)},
        functions=enumerate_functions(spec, blocks),
        spec=spec,
    )
