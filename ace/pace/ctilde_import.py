"""The C-tilde importer: a .yace file's bonds, embeddings and E0 as they are, its C-tilde
functions turned back into B-functions (ace.pace.ctilde_inversion; the format:
docs/file-formats.md, PACE .yace)."""
from __future__ import annotations

import warnings

import numpy as np

from ace.basis.coupling import MAX_RANK
from ace.basis.model import RADIAL_FAMILIES, BFunction, Bond, Embedding
from ace.pace.common import PACE_METADATA_KEY, PaceCompatibilityWarning
from ace.pace.ctilde_inversion import solve_couplings
from ace.pace.reader import (Reader, coefficient_matrix, finish_potential, merged_functions,
                             read_element_list, read_embedding_name, read_inner_cutoff_type,
                             read_radial_name)


def potential_from_yace(data, path):
    rd = Reader(path)
    names = rd.get(data, "elements", "top level")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise rd.error("elements", "expected a non-empty list of element names")
    names = read_element_list(rd, list(names), "elements")
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
            nd, read_embedding_name(rd, rd.get(emb, "npoti", where), f"{where}: npoti"), fs,
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
        itype = read_inner_cutoff_type(rd, bond.get("inner_cutoff_type", "density"),
                            f"{where}: inner_cutoff_type")
        types[(i, j)] = itype
        bonds[(perm[i], perm[j])] = Bond(
            read_radial_name(rd, rd.get(bond, "radbasename", where), f"{where}: radbasename"), lam,
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
    functions, coefficients = merged_functions(functions, coefficients)
    ndmax = max(e.ndensity for e in embeddings.values())
    e0 = np.zeros(n_el)
    for mu in range(n_el):
        e0[perm[mu]] = e0_file[mu]
    metadata = {PACE_METADATA_KEY: {"format": "yace", "deltaSplineBins": dsb}}
    return finish_potential(rd, (elements, bonds, embeddings, functions,
                        coefficient_matrix(coefficients, ndmax), e0), metadata)


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
    return solve_couplings(rd, label, mu0, mus, ns, ls, ms, padded)
