"""PACE potential files (python-ace / pacemaker / LAMMPS ``pair_style pace``): export and import.

Two formats (PACE_FORMAT.md, sections 1.1-1.3):

* ``.yaml`` -- pacemaker's B-basis file: species blocks with embeddings, bonds and the coupled
  B-functions with their coefficients. It maps one-to-one onto :class:`ACEPotential`.
* ``.yace`` -- the C-tilde file LAMMPS reads: bonds of every ordered pair, per-element E0 and
  products of A's with folded coefficients in PACE's half m-space. Export folds our B-functions
  with :func:`ace.basis.to_ctilde`; import recovers B-coefficients per (mu0; mus, ns, ls) tuple
  by least squares over our independent couplings and checks that the residual is round-off.

Energy constants. pyace and LAMMPS add a .yace file's ``E0`` list to every atomic energy, but
nothing of a .yaml file: pacemaker's metadata ``reference_energy`` (the per-element single-atom
energies the model was trained relative to, and a per-atom ``shift``) is *not* part of the
predicted energy. Hence:

* ``load_pace("x.yaml")`` gives E0 = 0 (energies identical to pyace's) and keeps the metadata;
  ``reference_energy=True`` instead sets E0 = reference_energy[element] - shift (total energies).
* ``export_pace_yaml`` refuses a potential with nonzero E0 unless ``e0_to_metadata=True``, which
  stores E0 as pacemaker's ``reference_energy``; pyace then predicts E - sum E0 (and
  ``load_pace(..., reference_energy=True)`` gives the E0 back). ``export_yace`` writes E0.

Where PACE evaluates differently from our core, export fails naming the feature and import
warns with :class:`PaceCompatibilityWarning` (see :func:`pace_differences`). Files are read with
YAML safe loaders only and written atomically.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings

import numpy as np
import yaml
from ase.data import atomic_numbers

from ace.basis.coupling import MAX_RANK, generalized_cg, independent_couplings
from ace.basis.ctilde import bfunction_ms_coefficients, equal_groups, to_ctilde
from ace.basis.model import (EMBEDDINGS, INNER_CUTOFF_TYPES, RADIAL_FAMILIES, BFunction, Bond,
                             Embedding)
from ace.limits import (BOND_INTEGER_LIMITS, MAX_FUNCTIONS, check_integer, read_text_file,
                        yaml_load_bounded)
from ace.potential import ACEPotential, PotentialFileError, write_atomic

__all__ = ["PaceFormatError", "PaceExportError", "PaceCompatibilityWarning", "export_pace_yaml",
           "export_yace", "load_pace", "load_pace_yaml", "load_yace", "pace_differences"]

DEFAULT_DELTA_SPLINE_BINS = 0.001
# PACE's ZBL table names elements H .. Lr (atomic numbers 1..103).
PACE_MAX_ATOMIC_NUMBER = 103
# PACE stores the number of m-combinations of a C-tilde function in a 16-bit integer.
PACE_MAX_MS_COMBS = 32767
# Radial-basis names PACE files may carry, mapped to ours; TEST_SBessel is PACE's alias.
RADIAL_NAMES = {"SBessel": "SBessel", "TEST_SBessel": "SBessel", "ChebExpCos": "ChebExpCos",
                "ChebPow": "ChebPow"}
# Largest integer any field of a PACE file holds (indices, counts, m's); beyond, int() overflows.
INTEGER_FIELD_LIMIT = 2**31 - 1
# Relative residual above which C-tilde coefficients are not a combination of B-functions.
CTILDE_RESIDUAL_TOLERANCE = 1e-9
# Bond of an element pair a .yaml file does not define (no function uses it): PACE evaluates
# such neighbours with its defaults (ChebExpCos, lambda 1, rcut = dcut = 1 Å, crad = 0,
# core (0, 1), r_in = 0, delta_in = 1e-5), which contribute nothing but can select the ZBL blend.
ABSENT_BOND = dict(radbase="ChebExpCos", radparameters=[1.0], rcut=1.0, dcut=1.0, nradbase=1,
                   nradmax=0, lmax=0, r_in=0.0, delta_in=1e-5, core_repulsion=(0.0, 1.0))
PACE_METADATA_KEY = "pace"
ACE_METADATA_KEY = "ace_metadata"  # our metadata, as JSON, inside a PACE .yaml's metadata
REFERENCE_ENERGY_KEY = "reference_energy"

try:  # the C loader is much faster on large files; both are "safe" variants
    _BaseSafeLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _BaseSafeLoader = yaml.SafeLoader


class PaceFormatError(PotentialFileError):
    """A PACE file is malformed, truncated, inconsistent or uses an unsupported variant."""


class PaceExportError(ValueError):
    """The potential uses something a PACE file cannot represent (or PACE evaluates differently)."""


class PaceCompatibilityWarning(UserWarning):
    """An imported PACE potential is evaluated differently by PACE and by our core somewhere."""


# =============================================================================================
# PACE-specific behaviour that our core does not reproduce

def pace_differences(potential) -> list:
    """Messages naming where PACE would evaluate ``potential`` differently from our core.

    PACE sets the radial basis g_k to 0 for r <= r_in - delta_in; for inner_cutoff_type 'zbl'
    it uses r_in = 1 Å there when delta_in == 0 (and no cut otherwise). Our core cuts the basis
    only through (1 - f_in) for 'distance', which vanishes there too, so the rule matters for
    'density' bonds with r_in > delta_in, and for 'zbl' bonds with delta_in == 0 and r_in < 1 Å
    (a neighbour closer than 1 Å that is not the one selecting the ZBL blend).
    """
    out = []
    el = potential.elements
    for (i, j), b in sorted(potential.bonds.items()):
        pair = f"{el[i]}-{el[j]}"
        if b.inner_cutoff_type == "density" and b.r_in - b.delta_in > 0:
            out.append(f"bond {pair}: inner_cutoff_type 'density' with r_in - delta_in = "
                       f"{b.r_in - b.delta_in:g} Å > 0 (PACE zeroes the radial basis below it, "
                       f"our core does not)")
        if b.inner_cutoff_type == "zbl" and b.delta_in == 0 and b.r_in < 1.0 and b.rcut > 1.0:
            out.append(f"bond {pair}: inner_cutoff_type 'zbl' with delta_in = 0 and r_in = "
                       f"{b.r_in:g} Å < 1 Å (PACE zeroes the radial basis below 1 Å, our core "
                       f"does not)")
    return out


# =============================================================================================
# export

def _check_exportable(pot, kind):
    """Raise PaceExportError naming the first feature PACE cannot represent."""
    el = pot.elements
    for name in el:
        if not re.fullmatch(r"[A-Z][a-z]?", name):
            raise PaceExportError(f"element name {name!r} is not a chemical symbol PACE knows")
    if pot.inner_cutoff_type == "zbl":
        for name in el:
            if atomic_numbers[name] > PACE_MAX_ATOMIC_NUMBER:
                raise PaceExportError(f"ZBL core repulsion for {name}: PACE's ZBL table ends at "
                                      f"Lr (Z = {PACE_MAX_ATOMIC_NUMBER})")
    types = {b.inner_cutoff_type for b in pot.bonds.values()}
    if len(types) != 1:
        raise PaceExportError(f"mixed inner_cutoff_type {sorted(types)}: PACE has one global type")
    for (i, j), b in sorted(pot.bonds.items()):
        pair = f"{el[i]}-{el[j]}"
        if b.radbase not in RADIAL_FAMILIES:
            raise PaceExportError(f"bond {pair}: radial basis {b.radbase!r} is not a PACE family "
                                  f"({', '.join(RADIAL_FAMILIES)})")
        if b.inner_cutoff_type not in INNER_CUTOFF_TYPES:
            raise PaceExportError(f"bond {pair}: inner_cutoff_type {b.inner_cutoff_type!r}")
        if b.radbase == "ChebExpCos" and not (b.radparameters and b.radparameters[0] != 0):
            raise PaceExportError(f"bond {pair}: ChebExpCos needs a nonzero lambda")
    for i, emb in sorted(pot.embeddings.items()):
        if emb.npot not in EMBEDDINGS:
            raise PaceExportError(f"element {el[i]}: embedding {emb.npot!r} is not a PACE "
                                  f"embedding ({', '.join(EMBEDDINGS)})")
    for f in pot.functions:
        if f.rank > MAX_RANK:
            raise PaceExportError(f"function {_describe(pot, f)}: rank {f.rank} > {MAX_RANK} "
                                  f"(PACE couples at most rank {MAX_RANK})")
    differences = pace_differences(pot)
    if differences:
        raise PaceExportError("PACE would evaluate this potential differently: "
                              + "; ".join(differences))
    if kind == "yaml":
        _pair_bonds(pot, _blocks(pot))  # raises for asymmetric bonds


def _same_bond(a, b):
    return (a.radbase == b.radbase and list(a.radparameters) == list(b.radparameters)
            and a.rcut == b.rcut and a.dcut == b.dcut and a.r_in == b.r_in
            and a.delta_in == b.delta_in and a.inner_cutoff_type == b.inner_cutoff_type
            and tuple(a.core_repulsion) == tuple(b.core_repulsion)
            and a.crad.shape == b.crad.shape and np.array_equal(a.crad, b.crad))


def _is_absent(bond):
    absent = Bond(crad=np.zeros((0, 1, 1)), inner_cutoff_type=bond.inner_cutoff_type,
                  **ABSENT_BOND)
    return _same_bond(bond, absent)


def _describe(pot, f):
    el = pot.elements
    return (f"{el[f.mu0]}: mus={[el[m] for m in f.mus]} ns={list(f.ns)} ls={list(f.ls)} "
            f"LS={list(f.LS)}")


def _delta_spline_bins(pot, value):
    if value is None:  # the basis specification's, or the imported PACE file's, or 0.001
        spec = pot.basis_spec if isinstance(pot.basis_spec, dict) else {}
        pace = (pot.metadata or {}).get(PACE_METADATA_KEY)
        pace = pace if isinstance(pace, dict) else {}
        value = (spec.get("deltaSplineBins") or pace.get("deltaSplineBins")
                 or DEFAULT_DELTA_SPLINE_BINS)
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise PaceExportError(f"deltaSplineBins must be positive, got {value}")
    return value


def _num(x):
    """A float as YAML both yaml-cpp and PyYAML read back exactly (shortest round-trip repr)."""
    x = float(x)
    if not math.isfinite(x):
        raise PaceExportError(f"cannot write the non-finite number {x}")
    text = repr(x)
    if "e" in text and "." not in text:  # PyYAML's YAML 1.1 floats need a dot: 1.0e-05
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _flow(value):
    """YAML flow text of numbers, plain words and nested lists."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _num(value)
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.+-]*( [A-Z][a-z]?)*", value):
        return value
    raise PaceExportError(f"cannot write {value!r} in a PACE file")


def _flow_map(items):
    return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in items) + "}"


def _coefficients(pot, k, f):
    return pot.coefficients[k, :pot.embeddings[f.mu0].ndensity]


# ----------------------------------------------------------------------------- .yaml (B-basis)

def export_pace_yaml(potential, path, e0_to_metadata=False, delta_spline_bins=None):
    """Write ``potential`` as pacemaker's B-basis .yaml (read by pyace and ``pace_yaml2yace``).

    PACE does not add anything of a .yaml file to the energy, so a potential with nonzero E0
    is refused unless ``e0_to_metadata``: then E0 goes into metadata ``reference_energy`` as
    pacemaker writes it, and pyace predicts E - sum_i E0(mu_i). Bonds must be symmetric (PACE
    requires crad(A, B) == crad(B, A)); bonds of 2-species blocks are zero-padded where the
    block's functions need more radial functions than the pair bond has (exact: the padding is
    never used). ``delta_spline_bins`` defaults to the basis specification's value or 0.001.
    """
    pot = potential
    _check_exportable(pot, "yaml")
    if np.any(pot.e0 != 0) and not e0_to_metadata:
        raise PaceExportError(
            "nonzero E0 " + str(dict(zip(pot.elements, map(float, pot.e0)))) + ": a PACE .yaml "
            "cannot add it to the energy (pyace ignores metadata); export .yace, or pass "
            "e0_to_metadata=True to store it as pacemaker's metadata reference_energy")
    text = pace_yaml_text(pot, _delta_spline_bins(pot, delta_spline_bins))
    write_atomic(path, text)


def _yaml_metadata(pot):
    meta = dict(pot.metadata or {})
    pace = meta.pop(PACE_METADATA_KEY, None)
    out = {}
    if isinstance(pace, dict) and isinstance(pace.get("metadata"), dict):
        out.update({str(k): str(v) for k, v in pace["metadata"].items()})
    out.pop(ACE_METADATA_KEY, None)
    if meta:
        out[ACE_METADATA_KEY] = json.dumps(meta, default=str, sort_keys=True)
    if np.any(pot.e0 != 0):
        out[REFERENCE_ENERGY_KEY] = json.dumps(
            {e: float(v) for e, v in zip(pot.elements, pot.e0)})
    auxdata = pace.get("auxdata") if isinstance(pace, dict) else None
    return out, auxdata


def _blocks(pot):
    """Functions by block key (central, sorted other elements): index lists."""
    blocks = {}
    for k, f in enumerate(pot.functions):
        others = tuple(sorted(set(f.mus) - {f.mu0}))
        blocks.setdefault((f.mu0, others), []).append(k)
    return blocks


def _pair_bonds(pot, blocks):
    """Bonds of the 2-species blocks "Ei Ej" to write, {(i, j): bond}, zero-padded.

    A direction whose bond is PACE's default (ABSENT_BOND) and that no function uses gets no
    block (pacemaker writes none, and PACE then uses that default). Otherwise both directions
    are written with the same bond, which PACE requires to be identical for A-B and B-A; it is
    zero-padded where a block's functions need more radial functions than the pair bond has
    (PACE checks the functions of a 2-species block against its bond; padding is never used).
    """
    n_el = len(pot.elements)
    used = {(f.mu0, mu) for f in pot.functions for mu in f.mus}
    out = {}
    for i in range(n_el):
        for j in range(i + 1, n_el):
            directions = [d for d in ((i, j), (j, i))
                          if d in used or not _is_absent(pot.bonds[d])]
            if not directions:
                continue
            b = pot.bonds[directions[0]]
            if len(directions) == 2 and not _same_bond(b, pot.bonds[directions[1]]):
                el = pot.elements
                raise PaceExportError(f"bonds {el[i]}-{el[j]} and {el[j]}-{el[i]} differ: a "
                                      f"PACE .yaml (B-basis) needs symmetric bonds (export "
                                      f".yace instead)")
            nradbase, nradmax, lmax = b.nradbase, b.nradmax, b.lmax
            for a, c in directions:
                for k in blocks.get((a, (c,)), []):
                    f = pot.functions[k]
                    if f.rank == 1:
                        nradbase = max(nradbase, f.ns[0] + 1)
                    else:
                        nradmax = max(nradmax, max(f.ns) + 1)
                        lmax = max(lmax, max(f.ls))
            crad = np.zeros((nradmax, lmax + 1, nradbase))
            crad[:b.nradmax, :b.lmax + 1, :b.nradbase] = b.crad
            padded = Bond(b.radbase, list(b.radparameters), b.rcut, b.dcut, nradbase, nradmax,
                          lmax, crad, b.r_in, b.delta_in, b.inner_cutoff_type, b.core_repulsion)
            for d in directions:
                out[d] = padded
    return out


def _bond_lines(b):
    lam = list(b.radparameters) or [0.0]
    return [f"    nradmaxi: {b.nradmax}",
            f"    lmaxi: {b.lmax}",
            f"    rcutij: {_num(b.rcut)}",
            f"    dcutij: {_num(b.dcut)}",
            f"    r_in: {_num(b.r_in)}",
            f"    delta_in: {_num(b.delta_in)}",
            f"    inner_cutoff_type: {b.inner_cutoff_type}",
            f"    nradbaseij: {b.nradbase}",
            f"    radbase: {b.radbase}",
            f"    radparameters: {_flow(lam)}",
            f"    radcoefficients: {_flow(b.crad.tolist())}",
            f"    core-repulsion: {_flow(list(b.core_repulsion))}"]


def _nbody_line(pot, k):
    f = pot.functions[k]
    el = pot.elements
    items = [("type", " ".join([el[f.mu0]] + [el[m] for m in f.mus])),
             ("nr", [n + 1 for n in f.ns]), ("nl", list(f.ls))]
    if f.rank > 2:
        items.append(("lint", list(f.LS)))
    items.append(("c", [float(c) for c in _coefficients(pot, k, f)]))
    return "      - " + _flow_map(items)


def pace_yaml_text(pot, delta_spline_bins=DEFAULT_DELTA_SPLINE_BINS):
    """The text of the PACE .yaml file of ``pot`` (no checks; see :func:`export_pace_yaml`).

    1-species blocks come first (pyace needs the embedding before the element's other blocks).
    """
    el = pot.elements
    n_el = len(el)
    blocks = _blocks(pot)
    pair_bonds = _pair_bonds(pot, blocks)
    metadata, auxdata = _yaml_metadata(pot)
    lines = []
    if metadata:
        lines.append(yaml.safe_dump({"metadata": metadata}, default_flow_style=False,
                                    allow_unicode=True, sort_keys=False, width=10 ** 9).rstrip())
    if auxdata:
        lines.append(yaml.safe_dump({"auxdata": auxdata}, default_flow_style=None,
                                    sort_keys=False, width=10 ** 9).rstrip())
    lines += ["global:", f"  DeltaSplineBins: {_num(delta_spline_bins)}", "species:"]

    def nbody(key):
        members = blocks.get(key, [])
        if not members:
            return ["    nbody: []"]
        return ["    nbody:"] + [_nbody_line(pot, k) for k in members]

    for i in range(n_el):  # 1-species blocks: embedding + bond (i, i)
        emb = pot.embeddings[i]
        lines += [f"  - speciesblock: {el[i]}",
                  f"    ndensityi: {emb.ndensity}",
                  f"    npoti: {emb.npot}",
                  f"    parameters: {_flow([float(x) for x in emb.fs_parameters])}",
                  f"    rho_core_cut: {_num(emb.rho_core_cut)}",
                  f"    drho_core_cut: {_num(emb.drho_core_cut)}"]
        lines += _bond_lines(pot.bonds[(i, i)]) + nbody((i, ()))
    for i in range(n_el):  # 2-species blocks "A B" and "B A", each with the bond
        for j in range(n_el):
            if (i, j) in pair_bonds:
                lines.append(f"  - speciesblock: {el[i]} {el[j]}")
                lines += _bond_lines(pair_bonds[(i, j)]) + nbody((i, (j,)))
    for (mu0, others), members in sorted(blocks.items()):  # 3+ species: functions only
        if len(others) < 2:
            continue
        lines.append("  - speciesblock: " + " ".join([el[mu0]] + [el[m] for m in others]))
        lines += nbody((mu0, others))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- .yace (C-tilde)

def export_yace(potential, path, delta_spline_bins=None):
    """Write ``potential`` as PACE's C-tilde .yace (LAMMPS ``pair_style pace``), with E0.

    B-functions are folded into products of A's on PACE's half m-space (rank-1 functions
    first per element); bonds of all ordered pairs are written, so asymmetric bonds are fine.
    """
    pot = potential
    _check_exportable(pot, "yace")
    write_atomic(path, yace_text(pot, _delta_spline_bins(pot, delta_spline_bins)))


def yace_text(pot, delta_spline_bins=DEFAULT_DELTA_SPLINE_BINS):
    """The text of the .yace file of ``pot`` (no checks; see :func:`export_yace`)."""
    el = pot.elements
    n_el = len(el)
    lines = [f"elements: {_flow(list(el))}",
             f"E0: {_flow([float(x) for x in pot.e0])}",
             f"deltaSplineBins: {_num(delta_spline_bins)}",
             "embeddings:"]
    for i in range(n_el):
        emb = pot.embeddings[i]
        lines.append(f"  {i}: " + _flow_map([
            ("ndensity", emb.ndensity), ("FS_parameters", [float(x) for x in emb.fs_parameters]),
            ("npoti", emb.npot), ("rho_core_cutoff", float(emb.rho_core_cut)),
            ("drho_core_cutoff", float(emb.drho_core_cut))]))
    lines.append("bonds:")
    for i in range(n_el):
        for j in range(n_el):
            b = pot.bonds[(i, j)]
            lines.append(f"  [{i}, {j}]: " + _flow_map([
                ("nradmax", b.nradmax), ("lmax", b.lmax), ("nradbasemax", b.nradbase),
                ("radbasename", b.radbase), ("radparameters", list(b.radparameters) or [0.0]),
                ("radcoefficients", b.crad.tolist()),
                ("prehc", b.core_repulsion[0]), ("lambdahc", b.core_repulsion[1]),
                ("rcut", b.rcut), ("dcut", b.dcut), ("rcut_in", b.r_in),
                ("dcut_in", b.delta_in), ("inner_cutoff_type", b.inner_cutoff_type)]))
    folded = to_ctilde(pot.functions, pot.coefficients)
    lines.append("functions:")
    for mu0 in range(n_el):
        mine = [c for c in folded if c.mu0 == mu0]  # sorted by rank already: rank 1 first
        if not mine:
            lines.append(f"  {mu0}: []")
            continue
        lines.append(f"  {mu0}:")
        nd = pot.embeddings[mu0].ndensity
        for c in mine:
            if len(c.ms) > PACE_MAX_MS_COMBS:
                raise PaceExportError(
                    f"C-tilde function {el[mu0]}: mus={list(c.mus)} ns={list(c.ns)} "
                    f"ls={list(c.ls)} has {len(c.ms)} m-combinations; PACE stores at most "
                    f"{PACE_MAX_MS_COMBS}")
            lines.append("    - " + _flow_map([
                ("mu0", mu0), ("rank", c.rank), ("ndensity", nd), ("num_ms_combs", len(c.ms)),
                ("mus", list(c.mus)), ("ns", [n + 1 for n in c.ns]), ("ls", list(c.ls)),
                ("ms_combs", np.asarray(c.ms, dtype=int).ravel().tolist()),
                ("ctildes", np.asarray(c.ctildes)[:, :nd].ravel().tolist())]))
    return "\n".join(lines) + "\n"


# =============================================================================================
# import

class _PaceLoader(_BaseSafeLoader):
    """The safe loader, plus flow-sequence mapping keys (``[0, 1]:`` in .yace bonds) as tuples
    and an error on duplicated keys. Constructs only plain data (no Python objects)."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping",
                                                    node.start_mark)
        self.flatten_mapping(node)
        mapping = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.SequenceNode):
                key = tuple(self.construct_sequence(key_node, deep=True))
            else:
                key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found an unhashable key", key_node.start_mark) from None
            if key in mapping:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


# YAML 1.1 reads the plain word No (nobelium) as false, and pacemaker's metadata starttime
# ("2024-01-02 03:04:05.678") as a datetime: here only true/false are booleans, and
# timestamps stay strings.
_PaceLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in _BaseSafeLoader.yaml_implicit_resolvers.items()}
_PaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class _Reader:
    """Typed access to parsed YAML with errors naming the file and the place."""

    def __init__(self, path):
        self.path = path

    def error(self, where, message):
        return PaceFormatError(f"{self.path}: {where}: {message}")

    def get(self, data, key, where, default=KeyError):
        if not isinstance(data, dict):
            raise self.error(where, f"expected a mapping, got {type(data).__name__}")
        if key not in data or data[key] is None:
            if default is KeyError:
                raise self.error(where, f"missing key '{key}'")
            return default
        return data[key]

    def number(self, value, where, integer=False):
        if isinstance(value, bool):
            raise self.error(where, f"expected a number, got {value!r}")
        if isinstance(value, str):  # PyYAML reads e.g. '1e-05' (no dot) as a string
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                raise self.error(where, f"expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise self.error(where, f"expected a number, got {value!r}")
        if integer:
            if isinstance(value, float) and not value.is_integer():
                raise self.error(where, f"expected an integer, got {value!r}")
            if abs(value) > INTEGER_FIELD_LIMIT:  # no field holds more; huge ones overflow
                digits = str(int(value))
                shown = digits if len(digits) <= 24 else f"of {len(digits)} digits"
                raise self.error(where, f"integer {shown} is out of range")
            return int(value)
        value = float(value)
        if not math.isfinite(value):
            raise self.error(where, f"non-finite number {value}")
        return value

    def numbers(self, value, where, integer=False, length=None):
        if not isinstance(value, list):
            raise self.error(where, f"expected a list, got {value!r}")
        if integer and all(type(v) is int for v in value):
            out = value  # the common cases first: already numbers of the right kind
        elif not integer and all(type(v) in (float, int) for v in value):
            out = [float(v) for v in value]
            if not all(math.isfinite(v) for v in out):
                raise self.error(where, "contains NaN or inf")
        else:
            out = [self.number(v, f"{where}[{i}]", integer) for i, v in enumerate(value)]
        if integer and out and max(abs(min(out)), abs(max(out))) > INTEGER_FIELD_LIMIT:
            raise self.error(where, "holds an integer out of range")
        if length is not None and len(out) != length:
            raise self.error(where, f"expected {length} values, got {len(out)}")
        return out

    def array(self, value, shape, where):
        try:
            arr = np.array(value, dtype=float)
        except (TypeError, ValueError):
            raise self.error(where, "not a regular numeric array (ragged or non-numeric)") from None
        if arr.size == 0 and 0 in shape:
            return np.zeros(shape)
        if arr.shape != tuple(shape):
            raise self.error(where, f"has shape {arr.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(arr)):
            raise self.error(where, "contains NaN or inf")
        return arr

    def sizes(self, where, **values):
        """Bond sizes (lmax, nradmax, nradbase) within ace.limits, before anything is sized by
        them."""
        for key, value in values.items():
            check_integer(value, BOND_INTEGER_LIMITS[key], f"{where}: {key}", error=self.error_in)

    def error_in(self, message):
        return PaceFormatError(f"{self.path}: {message}")

    def word(self, value, where):
        if not isinstance(value, str):
            raise self.error(where, f"expected a string, got {value!r}")
        return value


def _sniff(path):
    """('yaml' or 'yace', parsed data) from the content; the old text .ace format is refused."""
    text = read_text_file(path, PaceFormatError)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("nelements"):
        raise PaceFormatError(f"{path}: the old PACE text format (.ace) is not supported; convert "
                              f"it to .yace with python-ace (ACECTildeBasisSet(path)"
                              f".save_yaml(...)) or use the pacemaker .yaml")
    try:
        data = yaml_load_bounded(text, _PaceLoader, path, PaceFormatError)
    except PaceFormatError as exc:
        if "invalid YAML" in str(exc):
            raise PaceFormatError(f"{exc} (truncated or hand-broken file?)") from None
        raise
    if not isinstance(data, dict):
        raise PaceFormatError(f"{path}: not a PACE potential (the file does not hold a mapping)")
    if "format_version" in data or (isinstance(data.get("bonds"), list) and "e0" in data):
        raise PaceFormatError(f"{path}: an ace potential file without its first line "
                              f"'# ace-potential sha256=...' and its 'format: ace-potential' "
                              f"line: it was edited or damaged; save it again from ace")
    if "species" in data or "global" in data:
        return "yaml", data
    if {"elements", "E0", "bonds", "embeddings", "functions"} & set(data):
        return "yace", data
    raise PaceFormatError(f"{path}: not a PACE potential (neither a B-basis .yaml with "
                          f"'species' nor a C-tilde .yace with 'elements', 'bonds' and "
                          f"'functions')")


def load_pace(path, reference_energy=False):
    """Load a PACE .yaml (B-basis) or .yace (C-tilde) file as an :class:`ACEPotential`.

    The format is recognised from the content. ``reference_energy`` (for .yaml only) sets E0
    from pacemaker's metadata reference energies; by default E0 = 0, as pyace evaluates .yaml.
    """
    path = os.fspath(path)
    kind, data = _sniff(path)
    if kind == "yaml":
        return _potential_from_bbasis(data, path, reference_energy)
    if reference_energy:
        raise PaceFormatError(f"{path}: reference_energy applies to a pacemaker .yaml; a .yace "
                              f"carries its E0 itself")
    return _potential_from_yace(data, path)


def load_pace_yaml(path, reference_energy=False):
    """Load a pacemaker B-basis .yaml (see :func:`load_pace`)."""
    path = os.fspath(path)
    kind, data = _sniff(path)
    if kind != "yaml":
        raise PaceFormatError(f"{path}: not a PACE B-basis .yaml (no 'species' section)")
    return _potential_from_bbasis(data, path, reference_energy)


def load_yace(path):
    """Load a PACE C-tilde .yace (see :func:`load_pace`)."""
    path = os.fspath(path)
    kind, data = _sniff(path)
    if kind != "yace":
        raise PaceFormatError(f"{path}: not a PACE .yace (C-tilde) file")
    return _potential_from_yace(data, path)


def _radial_name(rd, name, where):
    name = rd.word(name, where)
    if name in RADIAL_NAMES:
        return RADIAL_NAMES[name]
    if name.startswith("ACE.jl"):
        raise rd.error(where, f"radial basis {name!r} (ACE.jl / ACEpotentials.jl export) is not "
                              f"supported; only PACE's {', '.join(RADIAL_FAMILIES)}")
    raise rd.error(where, f"radial basis {name!r} is not supported (supported: "
                          f"{', '.join(RADIAL_FAMILIES)})")


def _one_of(rd, value, where, allowed, what):
    value = rd.word(value, where)
    if value not in allowed:
        raise rd.error(where, f"{what} {value!r} is not supported (supported: "
                              f"{', '.join(allowed)})")
    return value


def _inner_type(rd, value, where):
    return _one_of(rd, value, where, INNER_CUTOFF_TYPES, "inner_cutoff_type")


def _npot(rd, value, where):
    return _one_of(rd, value, where, EMBEDDINGS, "embedding")


def _element_list(rd, names, where):
    for name in names:
        if name not in atomic_numbers or name == "X":
            raise rd.error(where, f"{name!r} is not a chemical element")
    if len(set(names)) != len(names):
        raise rd.error(where, f"duplicated elements in {names}")
    return names


def _finish(rd, pot_args, metadata):
    try:
        pot = ACEPotential(*pot_args, metadata=metadata)
    except PotentialFileError as exc:
        raise PaceFormatError(f"{rd.path}: {exc}") from None
    for message in pace_differences(pot):
        warnings.warn(f"{rd.path}: {message}; energies and forces can differ from PACE there",
                      PaceCompatibilityWarning, stacklevel=3)
    return pot


def _sorted_functions(functions, coefficients):
    """Merge duplicates (coefficients add up: exact) and sort by central element."""
    merged = {}
    for f, c in zip(functions, coefficients):
        key = (f.mu0, f.rank, f.mus, f.ns, f.ls, f.LS)
        merged[key] = merged[key] + c if key in merged else np.array(c, dtype=float)
    keys = sorted(merged)
    return [BFunction(k[0], k[2], k[3], k[4], k[5]) for k in keys], [merged[k] for k in keys]


def _coefficient_matrix(coefficients, ndmax):
    out = np.zeros((len(coefficients), ndmax))
    for k, c in enumerate(coefficients):
        out[k, :len(c)] = c
    return out


# ----------------------------------------------------------------------------- .yaml import

_RADIAL_KEYS = ("nradmaxi", "nradbaseij", "radbase", "radparameters", "radcoefficients")


def _read_block_bond(rd, block, where):
    """The radial basis of a block, or None if it defines none."""
    if "lmaxi" not in block:
        partial = [k for k in _RADIAL_KEYS if k in block]
        if partial:
            raise rd.error(where, f"radial basis only partially defined ({', '.join(partial)} "
                                  f"without lmaxi)")
        return None
    lmax = rd.number(rd.get(block, "lmaxi", where), f"{where}: lmaxi", integer=True)
    nradmax = rd.number(rd.get(block, "nradmaxi", where), f"{where}: nradmaxi", integer=True)
    nradbase = rd.number(rd.get(block, "nradbaseij", where), f"{where}: nradbaseij", integer=True)
    if lmax < 0 or nradmax < 0 or nradbase < 1:
        raise rd.error(where, f"needs lmaxi >= 0, nradmaxi >= 0, nradbaseij >= 1, got "
                              f"{lmax}, {nradmax}, {nradbase}")
    rd.sizes(where, lmax=lmax, nradmax=nradmax, nradbase=nradbase)
    radbase = _radial_name(rd, rd.get(block, "radbase", where), f"{where}: radbase")
    lam = rd.numbers(rd.get(block, "radparameters", where), f"{where}: radparameters")
    if not lam:
        raise rd.error(where, "radparameters is empty (PACE reads lambda from it)")
    raw = rd.get(block, "radcoefficients", where)
    shape = (nradmax, lmax + 1, nradbase)
    size = nradmax * (lmax + 1) * nradbase
    if isinstance(raw, list) and raw and not any(isinstance(x, list) for x in raw):
        # legacy flat list: k slowest, then n, then l
        values = rd.array(raw, (size,), f"{where}: radcoefficients")
        crad = values.reshape(nradbase, nradmax, lmax + 1).transpose(1, 2, 0)
    else:
        crad = rd.array(raw, shape, f"{where}: radcoefficients")
    return {"radbase": radbase, "radparameters": lam,
            "rcut": rd.number(rd.get(block, "rcutij", where), f"{where}: rcutij"),
            "dcut": rd.number(rd.get(block, "dcutij", where), f"{where}: dcutij"),
            "nradbase": nradbase, "nradmax": nradmax, "lmax": lmax, "crad": crad}


def _read_block_core(rd, block, where):
    core = None
    if "core-repulsion" in block:
        core = rd.numbers(block["core-repulsion"], f"{where}: core-repulsion", length=2)
    return {"core": core,
            "inner_cutoff_type": _inner_type(rd, block.get("inner_cutoff_type", "density"),
                                             f"{where}: inner_cutoff_type"),
            "r_in": rd.number(block.get("r_in", 0.0), f"{where}: r_in"),
            "delta_in": rd.number(block.get("delta_in", 0.0), f"{where}: delta_in")}


def _read_function(rd, spec, block_elements, ndensity, where):
    kind = rd.word(rd.get(spec, "type", where), f"{where}: type")
    names = kind.split()
    if len(names) < 2:
        raise rd.error(where, f"type {kind!r} names no neighbour (rank 0)")
    if names[0] != block_elements[0]:
        raise rd.error(where, f"type {kind!r}: central element is not the block's "
                              f"{block_elements[0]}")
    stray = set(names[1:]) - set(block_elements)
    if stray:
        raise rd.error(where, f"type {kind!r}: elements {sorted(stray)} are not in the block")
    rank = len(names) - 1
    if rank > MAX_RANK:
        raise rd.error(where, f"rank {rank} > {MAX_RANK} is not supported")
    nr = rd.numbers(rd.get(spec, "nr", where), f"{where}: nr", integer=True, length=rank)
    nl = rd.numbers(rd.get(spec, "nl", where), f"{where}: nl", integer=True, length=rank)
    raw_c = rd.get(spec, "c", where)
    coef = rd.numbers(raw_c if isinstance(raw_c, list) else [raw_c], f"{where}: c")
    if len(coef) != ndensity:
        raise rd.error(where, f"{len(coef)} coefficients, but the embedding of {names[0]} has "
                              f"ndensity {ndensity}")
    LS = rd.numbers(rd.get(spec, "lint", where), f"{where}: lint", integer=True,
                    length=rank - 2) if rank > 2 else []
    if min(nr) < 1:
        raise rd.error(where, f"nr must be >= 1 (1-based), got {nr}")
    if min(nl) < 0 or (rank == 1 and nl != [0]):
        raise rd.error(where, f"invalid nl {nl}")
    if rank > 1:
        try:
            generalized_cg(nl, LS)
        except ValueError as exc:
            raise rd.error(where, f"invalid coupling nl={nl}, lint={LS}: {exc}") from None
    skip = bool(spec.get("skip", False))
    return names, tuple(n - 1 for n in nr), tuple(nl), tuple(LS), coef, skip


def _potential_from_bbasis(data, path, reference_energy=False):
    rd = _Reader(path)
    glob = rd.get(data, "global", "top level")
    dsb = rd.number(rd.get(glob, "DeltaSplineBins", "global"), "global: DeltaSplineBins")
    if dsb <= 0:
        raise rd.error("global", f"DeltaSplineBins must be positive, got {dsb}")
    species = rd.get(data, "species", "top level")
    if not isinstance(species, list) or not species:
        raise rd.error("species", "expected a non-empty list of species blocks")
    raw_meta = data.get("metadata") or {}
    if not isinstance(raw_meta, dict):
        raise rd.error("metadata", "expected a mapping of strings")
    pace_meta = {str(k): v if isinstance(v, str) else
                 json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                 for k, v in raw_meta.items()}

    parsed = []
    for b, block in enumerate(species):
        where = f"species[{b}]"
        name = rd.word(rd.get(block, "speciesblock", where), f"{where}: speciesblock")
        names = name.split()
        if not names:
            raise rd.error(where, "empty speciesblock")
        where = f"block '{name}'"
        parsed.append({"names": names, "where": where, "block": block,
                       "bond": _read_block_bond(rd, block, where),
                       "core": _read_block_core(rd, block, where)})
    elements = _element_list(rd, sorted({n for p in parsed for n in p["names"]}), "species")
    index = {e: i for i, e in enumerate(elements)}

    embeddings = {}
    for p in parsed:
        if len(set(p["names"])) != 1:
            continue
        block, where = p["block"], p["where"]
        i = index[p["names"][0]]
        if i in embeddings:
            raise rd.error(where, f"a second 1-species block for {elements[i]}")
        nd = rd.number(rd.get(block, "ndensityi", where), f"{where}: ndensityi", integer=True)
        fs = rd.numbers(rd.get(block, "parameters", where), f"{where}: parameters")
        if nd < 1 or len(fs) != 2 * nd:
            raise rd.error(where, f"parameters must hold 2 * ndensityi = {2 * nd} values, got "
                                  f"{len(fs)}")
        embeddings[i] = Embedding(nd, _npot(rd, rd.get(block, "npoti", where), f"{where}: npoti"),
                                  fs, rd.number(block.get("rho_core_cut", 100000.0),
                                                f"{where}: rho_core_cut"),
                                  rd.number(block.get("drho_core_cut", 250.0),
                                            f"{where}: drho_core_cut"))
    missing = [elements[i] for i in range(len(elements)) if i not in embeddings]
    if missing:
        raise rd.error("species", f"no 1-species block (embedding) for {missing}")

    # bonds: 1-species blocks give (i, i); 2-species blocks (i, j), completed from the dual
    pair_blocks = {}
    for p in parsed:
        if len(set(p["names"])) > 2:
            continue
        names = p["names"] if len(p["names"]) > 1 else p["names"] * 2
        if len(names) != 2:
            raise rd.error(p["where"], "a 1- or 2-species block names one or two elements")
        pair = (index[names[0]], index[names[1]])
        if pair in pair_blocks:
            raise rd.error(p["where"], "the pair's block is given twice")
        pair_blocks[pair] = p
    bond_parts = {}
    for (i, j), p in pair_blocks.items():
        radial, core = p["bond"], dict(p["core"])
        dual = pair_blocks.get((j, i))
        if i != j and dual is not None:
            if radial is None:
                radial = dual["bond"]
            elif dual["bond"] is not None and not _same_radial(radial, dual["bond"]):
                raise rd.error(p["where"], f"radial basis differs from block "
                                           f"'{' '.join(dual['names'])}'")
            if core["core"] is None and dual["core"]["core"] is not None:
                core = dict(dual["core"])
            elif core["core"] is not None and dual["core"]["core"] is not None and (
                    core["core"] != dual["core"]["core"] or core["r_in"] != dual["core"]["r_in"]
                    or core["delta_in"] != dual["core"]["delta_in"]):
                raise rd.error(p["where"], f"core repulsion or inner cutoff differs from block "
                                           f"'{' '.join(dual['names'])}'")
        if radial is None:
            raise rd.error(p["where"], "no radial basis (lmaxi, nradmaxi, nradbaseij, radbase, "
                                       "radparameters, radcoefficients, rcutij, dcutij)")
        bond_parts[(i, j)] = (radial, core)
    types = {core["inner_cutoff_type"] for _, core in bond_parts.values()}
    if len(types) > 1:
        raise rd.error("species", f"inner_cutoff_type differs between blocks ({sorted(types)}); "
                                  f"PACE requires one for all 1- and 2-species blocks")
    inner_type = types.pop()
    bonds = {}
    for pair, (radial, core) in bond_parts.items():
        prehc, lambdahc = core["core"] if core["core"] is not None else (0.0, 0.0)
        bonds[pair] = Bond(radial["radbase"], radial["radparameters"], radial["rcut"],
                           radial["dcut"], radial["nradbase"], radial["nradmax"], radial["lmax"],
                           radial["crad"], core["r_in"], core["delta_in"], inner_type,
                           (prehc, lambdahc))

    functions, coefficients = [], []
    for p in parsed:
        block, where = p["block"], p["where"]
        nbody = block.get("nbody")
        if nbody is None:
            nbody = []
        if not isinstance(nbody, list):
            raise rd.error(where, "nbody must be a list of functions")
        mu0 = index[p["names"][0]]
        for k, spec in enumerate(nbody):
            names, ns, ls, LS, coef, skip = _read_function(
                rd, spec, p["names"], embeddings[mu0].ndensity, f"{where}: nbody[{k}]")
            if skip:  # pyace leaves these out of the basis
                continue
            mus = tuple(index[n] for n in names[1:])
            for mu in mus:
                if (mu0, mu) not in bonds:
                    raise rd.error(f"{where}: nbody[{k}]", f"no bond {elements[mu0]}-"
                                                           f"{elements[mu]} is defined")
            functions.append(BFunction(mu0, mus, ns, ls, LS))
            coefficients.append(coef)
    n_el = len(elements)
    for (i, j), bond in bonds.items():
        if i < j and (j, i) in bonds and not _same_bond(bond, bonds[(j, i)]):
            raise rd.error(f"blocks '{elements[i]} {elements[j]}' and '{elements[j]} "
                           f"{elements[i]}'", "the two directions of the bond differ (PACE "
                                              "requires identical bonds A-B and B-A)")
    for i in range(n_el):  # pairs without a block: PACE's default bond (ABSENT_BOND)
        for j in range(n_el):
            if (i, j) not in bonds:
                bonds[(i, j)] = Bond(crad=np.zeros((0, 1, 1)), inner_cutoff_type=inner_type,
                                     **ABSENT_BOND)
    functions, coefficients = _sorted_functions(functions, coefficients)
    ndmax = max(e.ndensity for e in embeddings.values())

    e0 = np.zeros(n_el)
    if reference_energy:
        e0 = _e0_from_reference(rd, pace_meta, elements)
    metadata = {}
    if ACE_METADATA_KEY in pace_meta:
        try:
            ours = json.loads(pace_meta[ACE_METADATA_KEY])
        except json.JSONDecodeError:
            ours = None
        if isinstance(ours, dict):
            metadata.update(ours)
    pace = {"format": "yaml", "deltaSplineBins": dsb,
            "metadata": {k: v for k, v in pace_meta.items() if k != ACE_METADATA_KEY}}
    if data.get("auxdata"):
        pace["auxdata"] = data["auxdata"]
    metadata[PACE_METADATA_KEY] = pace
    return _finish(rd, (elements, bonds, embeddings, functions,
                        _coefficient_matrix(coefficients, ndmax), e0), metadata)


def _same_radial(a, b):
    return all(a[k] == b[k] for k in ("radbase", "radparameters", "rcut", "dcut", "nradbase",
                                      "nradmax", "lmax")) and np.array_equal(a["crad"], b["crad"])


def _e0_from_reference(rd, pace_meta, elements):
    """E0 = reference_energy[element] - shift (pacemaker: E_corrected = E - sum E_ref + N shift)."""
    text = pace_meta.get(REFERENCE_ENERGY_KEY)
    if text is None:
        raise rd.error("metadata", f"no '{REFERENCE_ENERGY_KEY}' to take E0 from")
    try:
        ref = json.loads(text)
    except json.JSONDecodeError:
        ref = None
    if not isinstance(ref, dict):
        raise rd.error("metadata", f"'{REFERENCE_ENERGY_KEY}' is {text!r}, not a JSON mapping of "
                                   f"per-element energies")
    shift = rd.number(ref.get("shift", 0.0), f"metadata: {REFERENCE_ENERGY_KEY}: shift")
    return np.array([rd.number(ref.get(e, 0.0), f"metadata: {REFERENCE_ENERGY_KEY}: {e}") - shift
                     for e in elements])


# ----------------------------------------------------------------------------- .yace import

def _potential_from_yace(data, path):
    rd = _Reader(path)
    names = rd.get(data, "elements", "top level")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise rd.error("elements", "expected a non-empty list of element names")
    names = _element_list(rd, list(names), "elements")
    n_el = len(names)
    elements = sorted(names)
    perm = [elements.index(n) for n in names]  # file index -> our (alphabetical) index
    e0_file = rd.numbers(rd.get(data, "E0", "top level"), "E0", length=n_el)
    dsb = rd.number(rd.get(data, "deltaSplineBins", "top level"), "deltaSplineBins")
    if dsb <= 0:
        raise rd.error("deltaSplineBins", f"must be positive, got {dsb}")

    raw_emb = rd.get(data, "embeddings", "top level")
    if not isinstance(raw_emb, dict):
        raise rd.error("embeddings", "expected a mapping by species index")
    embeddings = {}
    for key, emb in raw_emb.items():
        mu = _species_key(rd, key, n_el, "embeddings")
        where = f"embeddings[{key}]"
        nd = rd.number(rd.get(emb, "ndensity", where), f"{where}: ndensity", integer=True)
        fs = rd.numbers(rd.get(emb, "FS_parameters", where), f"{where}: FS_parameters")
        if nd < 1 or len(fs) != 2 * nd:
            raise rd.error(where, f"FS_parameters must hold 2 * ndensity = {2 * nd} values")
        embeddings[perm[mu]] = Embedding(
            nd, _npot(rd, rd.get(emb, "npoti", where), f"{where}: npoti"), fs,
            rd.number(rd.get(emb, "rho_core_cutoff", where), f"{where}: rho_core_cutoff"),
            rd.number(rd.get(emb, "drho_core_cutoff", where), f"{where}: drho_core_cutoff"))
    missing = [names[mu] for mu in range(n_el) if perm[mu] not in embeddings]
    if missing:
        raise rd.error("embeddings", f"no embedding for {missing}")

    raw_bonds = rd.get(data, "bonds", "top level")
    if not isinstance(raw_bonds, dict):
        raise rd.error("bonds", "expected a mapping by species pair [i, j]")
    for bond in raw_bonds.values():  # ACE.jl bases first: they lack PACE's keys
        if isinstance(bond, dict) and str(bond.get("radbasename", "")).startswith("ACE.jl"):
            raise rd.error("bonds", f"radial basis {bond['radbasename']!r} (an ACE.jl / "
                                    f"ACEpotentials.jl export) is not supported; only PACE's "
                                    f"{', '.join(RADIAL_FAMILIES)}")
    bonds, types = {}, {}
    for key, bond in raw_bonds.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise rd.error("bonds", f"key {key!r} is not a species pair [i, j]")
        i, j = (_species_key(rd, k, n_el, "bonds") for k in key)
        where = f"bonds[{i}, {j}]"
        nradmax = rd.number(rd.get(bond, "nradmax", where), f"{where}: nradmax", integer=True)
        lmax = rd.number(rd.get(bond, "lmax", where), f"{where}: lmax", integer=True)
        nradbase = rd.number(rd.get(bond, "nradbasemax", where), f"{where}: nradbasemax",
                             integer=True)
        if lmax < 0 or nradmax < 0 or nradbase < 1:
            raise rd.error(where, "needs lmax >= 0, nradmax >= 0, nradbasemax >= 1")
        rd.sizes(where, lmax=lmax, nradmax=nradmax, nradbase=nradbase)
        lam = rd.numbers(rd.get(bond, "radparameters", where), f"{where}: radparameters")
        if not lam:
            raise rd.error(where, "radparameters is empty (PACE reads lambda from it)")
        crad = rd.array(rd.get(bond, "radcoefficients", where), (nradmax, lmax + 1, nradbase),
                        f"{where}: radcoefficients")
        itype = _inner_type(rd, bond.get("inner_cutoff_type", "density"),
                            f"{where}: inner_cutoff_type")
        types[(i, j)] = itype
        bonds[(perm[i], perm[j])] = Bond(
            _radial_name(rd, rd.get(bond, "radbasename", where), f"{where}: radbasename"), lam,
            rd.number(rd.get(bond, "rcut", where), f"{where}: rcut"),
            rd.number(rd.get(bond, "dcut", where), f"{where}: dcut"),
            nradbase, nradmax, lmax, crad,
            rd.number(bond.get("rcut_in", 0.0), f"{where}: rcut_in"),
            rd.number(bond.get("dcut_in", 0.0), f"{where}: dcut_in"), itype,
            (rd.number(rd.get(bond, "prehc", where), f"{where}: prehc"),
             rd.number(rd.get(bond, "lambdahc", where), f"{where}: lambdahc")))
    absent = [f"{names[i]}-{names[j]}" for i in range(n_el) for j in range(n_el)
              if (perm[i], perm[j]) not in bonds]
    if absent:
        raise rd.error("bonds", f"missing bonds {absent} (a .yace needs all ordered pairs)")
    # PACE keeps one global inner_cutoff_type: the one of the last bond it reads, (n-1, n-1)
    inner_type = types[(n_el - 1, n_el - 1)]
    if len(set(types.values())) > 1:
        warnings.warn(f"{path}: bonds name different inner_cutoff_type values "
                      f"{sorted(set(types.values()))}; PACE applies '{inner_type}' (that of the "
                      f"last bond) to all, and so does this import", PaceCompatibilityWarning,
                      stacklevel=3)
    for b in bonds.values():
        b.inner_cutoff_type = inner_type

    raw_funcs = rd.get(data, "functions", "top level")
    if not isinstance(raw_funcs, dict):
        raise rd.error("functions", "expected a mapping by species index")
    functions, coefficients = [], []
    seen = set()
    for key, funcs in raw_funcs.items():
        mu_file = _species_key(rd, key, n_el, "functions")
        seen.add(mu_file)
        if funcs is None:
            funcs = []
        if not isinstance(funcs, list):
            raise rd.error(f"functions[{key}]", "expected a list of functions")
        for k, spec in enumerate(funcs):
            where = f"functions[{key}][{k}]"
            for f, c in _bfunctions_from_ctilde(rd, spec, mu_file, perm, names, bonds,
                                                embeddings, where):
                functions.append(f)
                coefficients.append(c)
    missing = [names[mu] for mu in range(n_el) if mu not in seen]
    if missing:
        raise rd.error("functions", f"no entry for {missing} (PACE needs one per element, "
                                    f"possibly an empty list)")
    functions, coefficients = _sorted_functions(functions, coefficients)
    ndmax = max(e.ndensity for e in embeddings.values())
    e0 = np.zeros(n_el)
    for mu in range(n_el):
        e0[perm[mu]] = e0_file[mu]
    metadata = {PACE_METADATA_KEY: {"format": "yace", "deltaSplineBins": dsb}}
    return _finish(rd, (elements, bonds, embeddings, functions,
                        _coefficient_matrix(coefficients, ndmax), e0), metadata)


def _species_key(rd, key, n_el, where):
    if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < n_el:
        raise rd.error(where, f"species index {key!r} is not in 0..{n_el - 1}")
    return key


def _bfunctions_from_ctilde(rd, spec, mu_file, perm, names, bonds, embeddings, where):
    """B-functions (ours, with coefficient rows) equal to one C-tilde function of a .yace."""
    mu0_field = rd.number(rd.get(spec, "mu0", where), f"{where}: mu0", integer=True)
    if mu0_field != mu_file:
        raise rd.error(where, f"mu0 = {mu0_field} but it is listed under species {mu_file}")
    rank = rd.number(rd.get(spec, "rank", where), f"{where}: rank", integer=True)
    if not 1 <= rank <= MAX_RANK:
        raise rd.error(where, f"rank {rank} is not supported (1..{MAX_RANK})")
    nd = rd.number(rd.get(spec, "ndensity", where), f"{where}: ndensity", integer=True)
    mu0 = perm[mu_file]
    nd_emb = embeddings[mu0].ndensity
    if not 1 <= nd <= nd_emb:
        raise rd.error(where, f"ndensity {nd} but the embedding of {names[mu_file]} has {nd_emb}")
    ncomb = rd.number(rd.get(spec, "num_ms_combs", where), f"{where}: num_ms_combs", integer=True)
    mus_file = rd.numbers(rd.get(spec, "mus", where), f"{where}: mus", True, rank)
    for mu in mus_file:
        if not 0 <= mu < len(names):
            raise rd.error(where, f"species index {mu} in mus is out of range")
    mus = tuple(perm[mu] for mu in mus_file)
    ns = rd.numbers(rd.get(spec, "ns", where), f"{where}: ns", True, rank)
    ls = tuple(rd.numbers(rd.get(spec, "ls", where), f"{where}: ls", True, rank))
    ms = np.array(rd.numbers(rd.get(spec, "ms_combs", where), f"{where}: ms_combs", True,
                             rank * ncomb), dtype=int).reshape(ncomb, rank)
    ctildes = np.array(rd.numbers(rd.get(spec, "ctildes", where), f"{where}: ctildes",
                                  length=ncomb * nd)).reshape(ncomb, nd)
    if min(ns) < 1 or min(ls) < 0:
        raise rd.error(where, f"invalid ns {ns} (1-based) or ls {list(ls)}")
    ns = tuple(n - 1 for n in ns)
    label = (f"{where} ({names[mu_file]}: mus={[names[m] for m in mus_file]} "
             f"ns={[n + 1 for n in ns]} ls={list(ls)})")
    for mu, n, l in zip(mus, ns, ls):
        b = bonds[(mu0, mu)]
        if rank == 1 and not n < b.nradbase:
            raise rd.error(label, f"n = {n + 1} > nradbasemax = {b.nradbase} of its bond")
        if rank > 1 and not (n < b.nradmax and l <= b.lmax):
            raise rd.error(label, f"n = {n + 1} or l = {l} beyond nradmax = {b.nradmax}, "
                                  f"lmax = {b.lmax} of its bond")
    if np.any(np.abs(ms) > np.array(ls)[None, :]):
        raise rd.error(label, "an m is larger than its l")
    if np.any(ms.sum(axis=1) != 0):
        raise rd.error(label, "an m-combination does not sum to zero (not rotation invariant)")
    padded = np.zeros((ncomb, nd_emb))
    padded[:, :nd] = ctildes
    if rank == 1:
        if ls != (0,) or ms.tolist() != [[0]] * ncomb:
            raise rd.error(label, "a rank-1 function needs l = 0 and m = 0")
        return [(BFunction(mu0, mus, ns, ls, ()), padded.sum(axis=0))]
    return _solve_couplings(rd, label, mu0, mus, ns, ls, ms, padded)


def _sorted_within_groups(ms, groups):
    """m's of identical factors in descending order (our canonical order, as merge_equivalent)."""
    ms = np.array(ms, dtype=int, copy=True)
    for label in set(groups):
        columns = [t for t, g in enumerate(groups) if g == label]
        if len(columns) > 1:
            ms[:, columns] = -np.sort(-ms[:, columns], axis=1)
    return ms


def _canonical(ms, groups):
    """Rows in our half m-space, in our order of m's within identical factors.

    Re(c prod A_m) = Re(c prod A_-m) for real c (A_{l,-m} = (-1)^m A*_{lm}, sum m = 0), so a
    row may be replaced by its mirror; PACE sorts the m's of identical factors ascending, which
    can put a row of our half into the other one. Each row becomes whichever of m, -m is in our
    half after sorting within identical factors (first nonzero m positive).
    """
    rows, mirrored = _sorted_within_groups(ms, groups), _sorted_within_groups(-ms, groups)
    first = np.argmax(rows != 0, axis=1)
    negative = rows[np.arange(len(rows)), first] < 0
    rows[negative] = mirrored[negative]
    return rows


def _row_codes(rows, lmax):
    """One integer per m-tuple (|m| <= lmax)."""
    base = 2 * lmax + 1
    codes = np.zeros(len(rows), dtype=np.int64)
    for column in np.asarray(rows, dtype=np.int64).T:
        codes = codes * base + (column + lmax)
    return codes


def _solve_couplings(rd, label, mu0, mus, ns, ls, ms, ctildes):
    """B-coefficients over our independent couplings reproducing the C-tilde rows exactly.

    Rows equal up to permutations of identical factors or mirroring are merged (their products
    are equal under Re); then ctildes = sum_LS c_LS coef_LS(rows) is solved by least squares
    and the residual must be round-off.
    """
    groups = equal_groups(mus, ns, ls)
    try:
        couplings = independent_couplings(ls, groups)
    except ValueError as exc:
        raise rd.error(label, f"not supported: {exc}") from None
    scale = np.abs(ctildes).max(initial=0.0)
    if scale == 0:
        return []
    if not couplings:
        raise rd.error(label, "nonzero coefficients but the ls admit no invariant coupling")
    lmax = max(ls)
    target_codes = _row_codes(_canonical(ms, groups), lmax)
    pieces = [bfunction_ms_coefficients(BFunction(mu0, mus, ns, ls, LS)) for LS in couplings]
    column_codes = [_row_codes(f_ms, lmax) for f_ms, _ in pieces]
    codes, inverse = np.unique(np.concatenate([target_codes] + column_codes), return_inverse=True)
    inverse = inverse.ravel()
    rhs = np.zeros((len(codes), ctildes.shape[1]))
    np.add.at(rhs, inverse[:len(target_codes)], ctildes)
    matrix = np.zeros((len(codes), len(couplings)))
    start = len(target_codes)
    for c, (_, f_coef) in enumerate(pieces):
        matrix[inverse[start:start + len(f_coef)], c] = f_coef
        start += len(f_coef)
    solution, *_ = np.linalg.lstsq(matrix, rhs, rcond=None)
    residual = np.abs(matrix @ solution - rhs).max(initial=0.0)
    if residual > CTILDE_RESIDUAL_TOLERANCE * scale:
        raise rd.error(label, f"the C-tilde coefficients are not a combination of rotation-"
                              f"invariant couplings (relative residual {residual / scale:.2e} > "
                              f"{CTILDE_RESIDUAL_TOLERANCE:g})")
    return [(BFunction(mu0, mus, ns, ls, LS), solution[c]) for c, LS in enumerate(couplings)]
