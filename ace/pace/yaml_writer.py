"""The pacemaker B-basis .yaml writer (read by pyace and ``pace_yaml2yace``; the format:
docs/file-formats.md, PACE .yaml)."""
from __future__ import annotations

import json

import numpy as np
import yaml

from ace.basis.model import Bond
from ace.pace.common import (ACE_METADATA_KEY, DEFAULT_DELTA_SPLINE_BINS, PACE_METADATA_KEY,
                             REFERENCE_ENERGY_KEY, PaceExportError, is_absent, same_bond)
from ace.pace.export import (check_exportable, flow, flow_map, function_coefficients,
                             resolve_delta_spline_bins, yaml_number)
from ace.potential import write_atomic


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
    check_exportable(pot)
    _pair_bonds(pot, _blocks(pot))  # raises for asymmetric bonds
    if np.any(pot.e0 != 0) and not e0_to_metadata:
        raise PaceExportError(
            "nonzero E0 " + str(dict(zip(pot.elements, map(float, pot.e0)))) + ": a PACE .yaml "
            "cannot add it to the energy (pyace ignores metadata); export .yace, or pass "
            "e0_to_metadata=True to store it as pacemaker's metadata reference_energy")
    text = pace_yaml_text(pot, resolve_delta_spline_bins(pot, delta_spline_bins))
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
                          if d in used or not is_absent(pot.bonds[d])]
            if not directions:
                continue
            b = pot.bonds[directions[0]]
            if len(directions) == 2 and not same_bond(b, pot.bonds[directions[1]]):
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
            f"    rcutij: {yaml_number(b.rcut)}",
            f"    dcutij: {yaml_number(b.dcut)}",
            f"    r_in: {yaml_number(b.r_in)}",
            f"    delta_in: {yaml_number(b.delta_in)}",
            f"    inner_cutoff_type: {b.inner_cutoff_type}",
            f"    nradbaseij: {b.nradbase}",
            f"    radbase: {b.radbase}",
            f"    radparameters: {flow(lam)}",
            f"    radcoefficients: {flow(b.crad.tolist())}",
            f"    core-repulsion: {flow(list(b.core_repulsion))}"]


def _nbody_line(pot, k):
    f = pot.functions[k]
    el = pot.elements
    items = [("type", " ".join([el[f.mu0]] + [el[m] for m in f.mus])),
             ("nr", [n + 1 for n in f.ns]), ("nl", list(f.ls))]
    if f.rank > 2:
        items.append(("lint", list(f.LS)))
    items.append(("c", [float(c) for c in function_coefficients(pot, k, f)]))
    return "      - " + flow_map(items)


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
    lines += ["global:", f"  DeltaSplineBins: {yaml_number(delta_spline_bins)}", "species:"]

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
                  f"    parameters: {flow([float(x) for x in emb.fs_parameters])}",
                  f"    rho_core_cut: {yaml_number(emb.rho_core_cut)}",
                  f"    drho_core_cut: {yaml_number(emb.drho_core_cut)}"]
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
