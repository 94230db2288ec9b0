"""PACE's active-set file (.asi) for a potential exported as pacemaker's B-basis .yaml.

python-ace (``PyACECalculator("X.yaml").set_active_set("X.asi")``) and LAMMPS
(``pair_style pace/extrapolation``, ``pair_coeff * * X.yaml X.asi El...``) read an .asi as a
numpy .npz archive (``np.savez``: plain .npy arrays, no pickle) with one entry per element
symbol holding the inverse of its active-set matrix, [n, n], n = the element's functions.
PACE sorts an element's functions (``pace_function_order``); the columns are permuted
accordingly. Only linear-mode active sets are written: PACE's full mode infers itself from the
matrix size (ambiguous for single-density elements) and its dE/dc projections could not be
matched to ours, so interoperability is tested for the linear mode only.
"""
from __future__ import annotations

import io
import os

import numpy as np

from ace.potential import write_atomic



def pace_function_order(potential):
    """Per element index: our function indices in PACE's order (ACEBBasisSet sorts an
    element's functions by rank, then species, n, l and intermediate couplings)."""
    order = {}
    for mu in range(len(potential.elements)):
        own = [k for k, f in enumerate(potential.functions) if f.mu0 == mu]
        order[mu] = sorted(own, key=lambda k: _pace_key(potential.functions[k]))
    return order


def _pace_key(f):
    return (f.rank, tuple(f.mus), tuple(f.ns), tuple(f.ls), tuple(f.LS))


def pace_column_order(potential):
    """Per element symbol: our projection columns in PACE's order."""
    order = pace_function_order(potential)
    columns = {}
    for mu, element in enumerate(potential.elements):
        first = min((k for k, f in enumerate(potential.functions) if f.mu0 == mu), default=0)
        local = np.array(order[mu], dtype=np.int64) - first
        columns[element] = local
    return columns


def check_asi_exportable(active_set, potential):
    """Raise ValueError unless ``active_set`` belongs to ``potential`` and is linear-mode (the
    only mode PACE's .asi can carry)."""
    active_set.check(potential)
    if active_set.mode != "linear":
        raise ValueError(f"PACE .asi needs a linear-mode active set (this one is "
                         f"{active_set.mode}; ace's default grade is normalised): build one "
                         "with `ace active-set POTENTIAL DATA --mode linear`, or fit with "
                         "fit.active_set: linear")


def write_asi(active_set, potential, path):
    """Write the .asi of ``active_set`` (checked against ``potential``), atomically."""
    check_asi_exportable(active_set, potential)
    columns = pace_column_order(potential)
    arrays = {}
    for element in active_set.elements:
        # rows b P with P the column permutation: (A P)^-1 = P^T A^-1, so b P (A P)^-1 = b A^-1
        arrays[element] = np.ascontiguousarray(active_set.inverses[element][columns[element]])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def asi_path(pace_yaml_path):
    """PACE's name for the active set of X.yaml: X.asi."""
    return os.path.splitext(os.fspath(pace_yaml_path))[0] + ".asi"
