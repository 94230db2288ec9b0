"""What both PACE writers share: the check that PACE can represent a potential, and numbers and
flow sequences written as YAML that yaml-cpp (LAMMPS) and PyYAML read back exactly."""
from __future__ import annotations

import math
import re

import numpy as np
from ase.data import atomic_numbers

from ace.basis.coupling import MAX_RANK
from ace.basis.model import EMBEDDINGS, INNER_CUTOFF_TYPES, RADIAL_FAMILIES
from ace.pace.common import (DEFAULT_DELTA_SPLINE_BINS, PACE_METADATA_KEY, PaceExportError,
                             pace_differences)

# PACE's ZBL table names elements H .. Lr (atomic numbers 1..103).
PACE_MAX_ATOMIC_NUMBER = 103


def check_exportable(pot):
    """Raise PaceExportError naming the first feature PACE cannot represent (either format;
    the B-basis .yaml also needs symmetric bonds, which its writer checks)."""
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
            raise PaceExportError(f"function {describe(pot, f)}: rank {f.rank} > {MAX_RANK} "
                                  f"(PACE couples at most rank {MAX_RANK})")
    differences = pace_differences(pot)
    if differences:
        raise PaceExportError("PACE would evaluate this potential differently: "
                              + "; ".join(differences))


def describe(pot, f):
    el = pot.elements
    return (f"{el[f.mu0]}: mus={[el[m] for m in f.mus]} ns={list(f.ns)} ls={list(f.ls)} "
            f"LS={list(f.LS)}")


def resolve_delta_spline_bins(pot, value):
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


def yaml_number(x):
    """A float as YAML both yaml-cpp and PyYAML read back exactly (shortest round-trip repr)."""
    x = float(x)
    if not math.isfinite(x):
        raise PaceExportError(f"cannot write the non-finite number {x}")
    text = repr(x)
    if "e" in text and "." not in text:  # PyYAML's YAML 1.1 floats need a dot: 1.0e-05
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def flow(value):
    """YAML flow text of numbers, plain words and nested lists."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return yaml_number(value)
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.+-]*( [A-Z][a-z]?)*", value):
        return value
    raise PaceExportError(f"cannot write {value!r} in a PACE file")


def flow_map(items):
    return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in items) + "}"


def function_coefficients(pot, k, f):
    return pot.coefficients[k, :pot.embeddings[f.mu0].ndensity]
