"""The B-basis importer: a pacemaker .yaml, one-to-one onto :class:`ACEPotential` (the format:
docs/file-formats.md, PACE .yaml)."""
from __future__ import annotations

import json

import numpy as np

from ace.basis.coupling import MAX_RANK, generalized_cg
from ace.basis.model import BFunction, Bond, Embedding
from ace.pace.common import (ACE_METADATA_KEY, PACE_METADATA_KEY, REFERENCE_ENERGY_KEY,
                             absent_bond, same_bond)
from ace.pace.reader import (Reader, coefficient_matrix, finish_potential, merged_functions,
                             read_element_list, read_embedding_name, read_inner_cutoff_type,
                             read_radial_name)

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
    radbase = read_radial_name(rd, rd.get(block, "radbase", where), f"{where}: radbase")
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
            "inner_cutoff_type": read_inner_cutoff_type(rd, block.get("inner_cutoff_type", "density"),
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


def potential_from_bbasis(data, path, reference_energy=False):
    rd = Reader(path)
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
    elements = read_element_list(rd, sorted({n for p in parsed for n in p["names"]}), "species")
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
        embeddings[i] = Embedding(nd, read_embedding_name(rd, rd.get(block, "npoti", where), f"{where}: npoti"),
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
        if i < j and (j, i) in bonds and not same_bond(bond, bonds[(j, i)]):
            raise rd.error(f"blocks '{elements[i]} {elements[j]}' and '{elements[j]} "
                           f"{elements[i]}'", "the two directions of the bond differ (PACE "
                                              "requires identical bonds A-B and B-A)")
    for i in range(n_el):  # pairs without a block: PACE's default bond (ABSENT_BOND)
        for j in range(n_el):
            if (i, j) not in bonds:
                bonds[(i, j)] = absent_bond(inner_type)
    functions, coefficients = merged_functions(functions, coefficients)
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
    return finish_potential(rd, (elements, bonds, embeddings, functions,
                        coefficient_matrix(coefficients, ndmax), e0), metadata)


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
