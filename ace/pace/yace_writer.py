"""The C-tilde .yace writer (LAMMPS ``pair_style pace``; the format: docs/file-formats.md,
PACE .yace)."""
from __future__ import annotations

import numpy as np

from ace.basis.ctilde import to_ctilde
from ace.pace.common import DEFAULT_DELTA_SPLINE_BINS, PaceExportError
from ace.pace.export import (check_exportable, flow, flow_map, resolve_delta_spline_bins,
                             yaml_number)
from ace.potential import write_atomic

# PACE stores the number of m-combinations of a C-tilde function in a 16-bit integer.
PACE_MAX_MS_COMBS = 32767


def export_yace(potential, path, delta_spline_bins=None):
    """Write ``potential`` as PACE's C-tilde .yace (LAMMPS ``pair_style pace``), with E0.

    B-functions are folded into products of A's on PACE's half m-space (rank-1 functions
    first per element); bonds of all ordered pairs are written, so asymmetric bonds are fine.
    """
    pot = potential
    check_exportable(pot)
    write_atomic(path, yace_text(pot, resolve_delta_spline_bins(pot, delta_spline_bins)))


def yace_text(pot, delta_spline_bins=DEFAULT_DELTA_SPLINE_BINS):
    """The text of the .yace file of ``pot`` (no checks; see :func:`export_yace`)."""
    el = pot.elements
    n_el = len(el)
    lines = [f"elements: {flow(list(el))}",
             f"E0: {flow([float(x) for x in pot.e0])}",
             f"deltaSplineBins: {yaml_number(delta_spline_bins)}",
             "embeddings:"]
    for i in range(n_el):
        emb = pot.embeddings[i]
        lines.append(f"  {i}: " + flow_map([
            ("ndensity", emb.ndensity), ("FS_parameters", [float(x) for x in emb.fs_parameters]),
            ("npoti", emb.npot), ("rho_core_cutoff", float(emb.rho_core_cut)),
            ("drho_core_cutoff", float(emb.drho_core_cut))]))
    lines.append("bonds:")
    for i in range(n_el):
        for j in range(n_el):
            b = pot.bonds[(i, j)]
            lines.append(f"  [{i}, {j}]: " + flow_map([
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
            lines.append("    - " + flow_map([
                ("mu0", mu0), ("rank", c.rank), ("ndensity", nd), ("num_ms_combs", len(c.ms)),
                ("mus", list(c.mus)), ("ns", [n + 1 for n in c.ns]), ("ls", list(c.ls)),
                ("ms_combs", np.asarray(c.ms, dtype=int).ravel().tolist()),
                ("ctildes", np.asarray(c.ctildes)[:, :nd].ravel().tolist())]))
    return "\n".join(lines) + "\n"
