"""Tests of the basis specification, the coupling coefficients and the C-tilde folding."""
from collections import Counter
from itertools import product
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from ace.basis import (
    BasisSpec, BFunction, bfunction_ms_coefficients, build_basis, coupling_tree,
    generalized_cg, half_space, independent_couplings, power_order, to_ctilde,
    valid_intermediates)
from ace.basis.coupling import (
    _stack, _symmetrised_piece, invariant_dimension, merge_equivalent, select_independent)

SQRT3 = np.sqrt(3.0)
BONDS = {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": 5.0, "dcut": 0.01}}
EMBEDDINGS = {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1, 1, 0.5],
                      "ndensity": 2}}


def config(elements, functions, bonds=BONDS):
    return {"elements": list(elements), "embeddings": EMBEDDINGS, "bonds": bonds,
            "functions": functions}


# ---------------------------------------------------------------- evaluation helpers

def atomic_base(vectors, weights, lmax):
    """Ã_lm = Σ_j w_j sqrt(4π) Y_lm(r̂_j) for l <= lmax, as {(l, m): value}."""
    r = np.linalg.norm(vectors, axis=1)
    theta = np.arccos(np.clip(vectors[:, 2] / r, -1, 1))
    phi = np.mod(np.arctan2(vectors[:, 1], vectors[:, 0]), 2 * np.pi)
    return {(l, m): np.sqrt(4 * np.pi) * np.sum(weights * sph_harm_y(l, m, theta, phi))
            for l in range(lmax + 1) for m in range(-l, l + 1)}


def random_environment(rng, labels, n_neighbours=7):
    """Neighbour vectors and one radial weight vector per factor label."""
    vectors = rng.normal(size=(n_neighbours, 3))
    weights = {label: rng.normal(size=n_neighbours) for label in labels}
    return vectors, weights


def factor_bases(vectors, weights, lmax):
    return {label: atomic_base(vectors, w, lmax) for label, w in weights.items()}


def full_b(ls, labels, ms, coef, bases):
    """Σ_m C_m Π_t Ã_{l_t m_t} over the full m-space (complex)."""
    return sum(c * np.prod([bases[lab][(l, m)] for lab, l, m in zip(labels, ls, row)])
               for row, c in zip(ms, coef))


def half_b(ls, labels, ms, coef, bases):
    """Σ_rows coef Re(Π_t Ã_{l_t m_t}) over PACE's half m-space."""
    return sum(c * np.prod([bases[lab][(l, m)] for lab, l, m in zip(labels, ls, row)]).real
               for row, c in zip(ms, coef))


def brute_force_invariants(ls, groups):
    """dim(weight 0) - dim(weight 1) of the product symmetrised within groups, by enumeration."""
    rows = set()
    for ms in product(*(range(-l, l + 1) for l in ls)):
        key = tuple(tuple(sorted(m for m, g in zip(ms, groups) if g == label))
                    for label in sorted(set(groups)))
        rows.add((key, sum(ms)))
    weights = Counter(total for _, total in rows)
    return weights[0] - weights[1]


# ---------------------------------------------------------------- coupling

def test_rank2_generalized_cg_matches_pace_numbers():
    ms, coef = generalized_cg((1, 1), ())
    assert ms.tolist() == [[-1, 1], [0, 0], [1, -1]]
    np.testing.assert_allclose(coef, [1 / SQRT3, -1 / SQRT3, 1 / SQRT3], atol=1e-15)
    half_ms, half_coef = half_space(ms, coef, (0, 0))  # PACE: [-c/sqrt3, 2c/sqrt3]
    assert half_ms.tolist() == [[0, 0], [1, -1]]
    np.testing.assert_allclose(half_coef, [-1 / SQRT3, 2 / SQRT3], atol=1e-15)


def test_coupling_tree_is_paces():
    assert coupling_tree(3) == (((0, 1),), (3, 2))  # C(l1 l2|L12) C(L12 l3|00)
    assert coupling_tree(4) == (((0, 1), (2, 3)), (4, 5))
    assert coupling_tree(5) == (((0, 1), (2, 3), (5, 6)), (7, 4))  # ...C(L12 L34|L1234)C(. l5|0)
    assert coupling_tree(6) == (((0, 1), (2, 3), (4, 5), (6, 7)), (9, 8))


@pytest.mark.parametrize("ls", [(1, 1, 2), (2, 1, 3, 2), (1, 1, 1, 1, 2), (1, 2, 1, 2, 1, 1),
                                (3, 3, 2, 2), (0, 0, 0)])
def test_valid_intermediates_follow_pace_rules_and_span_all_invariants(ls):
    candidates = valid_intermediates(ls)
    for LS in candidates:
        if len(ls) == 3:
            assert LS[0] == ls[2]
        elif len(ls) == 4:
            assert LS[0] == LS[1]
        elif len(ls) == 5:
            assert LS[2] == ls[4]
        elif len(ls) == 6:
            assert LS[3] == LS[2]
        ms, coef = generalized_cg(ls, LS)
        assert np.all(ms.sum(axis=1) == 0)
        np.testing.assert_allclose(np.sum(coef ** 2), 1.0, atol=1e-12)  # orthonormal tree
    # the tree couplings of distinct factors are a basis of all rotation invariants
    assert len(candidates) == brute_force_invariants(ls, range(len(ls)))
    assert valid_intermediates(ls[:-1] + (ls[-1] + 1,)) == []  # odd Σl


def test_generalized_cg_is_product_of_tree_cgs():
    from sympy.physics.wigner import clebsch_gordan as cg  # independent of our table

    ls, LS = (1, 2, 2, 1, 2), (2, 3, 2)
    ms, coef = generalized_cg(ls, LS)
    expected = {}
    for m1, m2, m3, m4 in product(*(range(-l, l + 1) for l in ls[:4])):
        m5 = -(m1 + m2 + m3 + m4)
        if abs(m5) > ls[4] or abs(m1 + m2) > LS[0] or abs(m3 + m4) > LS[1]:
            continue
        value = (cg(1, 2, 2, m1, m2, m1 + m2) * cg(2, 1, 3, m3, m4, m3 + m4)
                 * cg(2, 3, 2, m1 + m2, m3 + m4, -m5) * cg(2, 2, 0, -m5, m5, 0))
        if value != 0:
            expected[(m1, m2, m3, m4, m5)] = float(value)
    assert {tuple(r) for r in ms} == set(expected)
    np.testing.assert_allclose(coef, [expected[tuple(r)] for r in ms], atol=1e-14)


INVARIANCE_CASES = [
    ((1, 1), (0, 0)), ((2, 2), (0, 1)), ((1, 1, 2), (0, 0, 1)), ((2, 2, 2), (0, 0, 0)),
    ((1, 2, 3), (0, 1, 2)), ((2, 2, 2, 2), (0, 0, 0, 1)), ((1, 1, 2, 2), (0, 0, 1, 1)),
    ((3, 3, 3, 3), (0, 0, 0, 0)), ((1, 1, 1, 1, 2), (0, 0, 1, 1, 2)),
    ((2, 2, 2, 2, 2), (0, 0, 0, 0, 0)), ((1, 1, 1, 1, 1, 1), (0, 0, 0, 1, 1, 1)),
    ((2, 2, 1, 1, 2, 2), (0, 0, 1, 1, 2, 2)),
]


@pytest.mark.parametrize("ls,groups", INVARIANCE_CASES)
def test_couplings_are_rotation_invariant_and_half_space_is_exact(ls, groups):
    rng = np.random.default_rng(sum(ls) + len(ls))
    vectors, weights = random_environment(rng, set(groups))
    rotated = vectors @ Rotation.random(random_state=rng).as_matrix().T
    bases = factor_bases(vectors, weights, max(ls))
    bases_rotated = factor_bases(rotated, weights, max(ls))
    kept = independent_couplings(ls, groups)
    assert kept
    for LS in kept:
        ms, coef = generalized_cg(ls, LS)
        b = full_b(ls, groups, ms, coef, bases)
        scale = max(1.0, abs(b))
        assert abs(b.imag) < 1e-10 * scale
        assert abs(full_b(ls, groups, ms, coef, bases_rotated) - b) < 1e-10 * scale
        half_ms, half_coef = half_space(ms, coef, groups)
        assert abs(half_b(ls, groups, half_ms, half_coef, bases) - b.real) < 1e-10 * scale


@pytest.mark.parametrize("ls,groups", INVARIANCE_CASES + [
    ((1, 1, 1, 1), (0, 0, 0, 0)), ((2, 2, 2, 2), (0, 0, 1, 1)), ((1, 1, 1, 1, 1, 1), (0,) * 6),
    ((2, 2, 2, 2, 2, 2), (0, 0, 0, 0, 1, 1)), ((4, 4, 4, 4), (0, 0, 0, 0))])
def test_independent_and_complete(ls, groups):
    kept = independent_couplings(ls, groups)
    # completeness against an independent count of the symmetric invariants
    assert len(kept) == brute_force_invariants(ls, groups) == invariant_dimension(ls, groups)
    # independence: the stacked symmetrised vectors have full rank
    vectors = _stack([_symmetrised_piece(ls, LS, groups) for LS in kept])
    singular = np.linalg.svd(vectors, compute_uv=False)
    assert singular.min() > 1e-6 * singular.max()
    # the greedy choice over all candidates (no early stop) finds the same set
    candidates = valid_intermediates(ls)
    everything = _stack([_symmetrised_piece(ls, LS, groups) for LS in candidates])
    assert [candidates[i] for i in select_independent(everything)] == kept


@pytest.mark.parametrize("ls,groups", [((1, 1, 1, 1), (0, 0, 0, 0)),
                                       ((2, 2, 2, 2), (0, 0, 0, 1)),
                                       ((1, 1, 2, 2), (0, 0, 1, 1)),
                                       ((1, 1, 1, 1, 2), (0, 0, 1, 1, 2))])
def test_functional_rank_of_all_candidates_equals_kept(ls, groups):
    """On random environments all candidate couplings span exactly len(kept) functions."""
    rng = np.random.default_rng(7)
    candidates = valid_intermediates(ls)
    values = []
    for _ in range(3 * len(candidates) + 5):
        bases = factor_bases(*random_environment(rng, set(groups)), max(ls))
        values.append([full_b(ls, groups, *generalized_cg(ls, LS), bases).real
                       for LS in candidates])
    values = np.array(values)
    norms = np.linalg.norm(values, axis=0)
    values = values[:, norms > 1e-10 * norms.max()]  # couplings that symmetrise to zero
    values /= np.linalg.norm(values, axis=0)
    singular = np.linalg.svd(values, compute_uv=False)
    assert np.sum(singular > 1e-8 * singular[0]) == len(independent_couplings(ls, groups))


def test_independent_couplings_are_deterministic_and_validated():
    assert independent_couplings((1, 1, 1, 1), "aabb") == [(0, 0), (2, 2)]
    assert independent_couplings((1, 1, 1, 1), (5, 5, 7, 7)) == [(0, 0), (2, 2)]
    assert independent_couplings((1, 1, 1)) == []
    with pytest.raises(ValueError, match="share l"):
        independent_couplings((1, 2), (0, 0))
    with pytest.raises(ValueError, match="rank"):
        independent_couplings((1,) * 8)


# ---------------------------------------------------------------- against pacemaker

def pyace_counts(cfg):
    from pyace import create_multispecies_basis_config

    bconf = create_multispecies_basis_config(cfg)
    counts = Counter()
    for block in bconf.funcspecs_blocks:
        for f in block.funcspecs:
            counts[(f.elements[0], len(f.ns))] += 1
    return bconf, counts


def our_counts(basis):
    return Counter({(el, rank): n for el, per_rank in basis.counts().items()
                    for rank, n in per_rank.items()})


def pyace_function_set(bconf, elements):
    index = {el: i for i, el in enumerate(sorted(elements))}
    return {(index[f.elements[0]], tuple(index[e] for e in f.elements[1:]),
             tuple(n - 1 for n in f.ns), tuple(f.ls), tuple(f.LS))
            for block in bconf.funcspecs_blocks for f in block.funcspecs}


COUNT_CASES = [
    (["Al"], {"ALL": {"nradmax_by_orders": [15, 6, 4, 3, 2], "lmax_by_orders": [0, 4, 3, 2, 1]}}),
    (["Al"], {"ALL": {"nradmax_by_orders": [5, 4, 3, 2, 2, 1],
                      "lmax_by_orders": [0, 6, 4, 3, 2, 2]}}),
    (["Cu"], {"ALL": {"nradmax_by_orders": [3, 2, 2, 2, 1, 1],
                      "lmax_by_orders": [0, 3, 3, 3, 3, 2]}}),
    (["Al", "Ni"], {"ALL": {"nradmax_by_orders": [8, 4, 3, 2, 1],
                            "lmax_by_orders": [0, 3, 3, 2, 1]}}),
    (["Ni", "Al"], {"UNARY": {"nradmax_by_orders": [8, 4, 3, 2], "lmax_by_orders": [0, 3, 3, 2]},
                    "BINARY": {"nradmax_by_orders": [5, 3, 2], "lmax_by_orders": [0, 2, 2]}}),
    (["Al", "Ni", "Cu"], {"ALL": {"nradmax_by_orders": [4, 3, 2, 1],
                                  "lmax_by_orders": [0, 2, 2, 1]}}),
]


@pytest.mark.parametrize("elements,functions", COUNT_CASES)
def test_counts_match_pacemaker(elements, functions):
    pytest.importorskip("pyace")
    cfg = config(elements, functions)
    bconf, expected = pyace_counts(cfg)
    basis = build_basis(cfg)
    assert our_counts(basis) == expected
    assert basis.n_functions == bconf.total_number_of_functions


def test_same_functions_as_pacemaker_including_couplings():
    pytest.importorskip("pyace")
    cfg = config(["Al", "Ni"], COUNT_CASES[3][1])
    bconf, _ = pyace_counts(cfg)
    ours = {(f.mu0, f.mus, f.ns, f.ls, f.LS) for f in build_basis(cfg).functions}
    assert ours == pyace_function_set(bconf, cfg["elements"])


def test_cap_keeps_lowest_power_order():
    functions = dict(COUNT_CASES[0][1])
    full = build_basis(config(["Al"], functions)).functions
    capped = build_basis(config(["Al"], {**functions,
                                         "number_of_functions_per_element": 300})).functions
    assert len(capped) == 300
    kept = set(capped)
    top_kept = max(power_order(f.ns, f.ls) for f in capped)
    assert all(power_order(f.ns, f.ls) >= top_kept for f in full if f not in kept)


@pytest.mark.parametrize("cap", [10, 100, 300, 5000])
def test_cap_per_element(cap):
    cfg = config(["Al", "Ni"], {**COUNT_CASES[3][1], "number_of_functions_per_element": cap})
    basis = build_basis(cfg)
    uncapped = build_basis(config(["Al", "Ni"], COUNT_CASES[3][1])).counts()
    for element, per_rank in basis.counts().items():
        assert sum(per_rank.values()) == min(cap, sum(uncapped[element].values()))


def test_cap_matches_pacemaker_when_blocks_are_large_enough():
    pytest.importorskip("pyace")
    for elements, functions in (COUNT_CASES[0], COUNT_CASES[3]):
        cfg = config(elements, {**functions, "number_of_functions_per_element": 300})
        bconf, _ = pyace_counts(cfg)
        ours = {(f.mu0, f.mus, f.ns, f.ls, f.LS) for f in build_basis(cfg).functions}
        assert ours == pyace_function_set(bconf, elements)


# ---------------------------------------------------------------- enumeration details

def test_functions_sorted_and_well_formed():
    basis = build_basis(config(["Al", "Ni"], COUNT_CASES[4][1]))
    keys = [(f.mu0, f.rank, f.mus, f.ns, f.ls, f.LS) for f in basis.functions]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for f in basis.functions:
        entries = list(zip(f.mus, f.ns, f.ls))
        assert entries == sorted(entries)
        assert sum(f.ls) % 2 == 0 and f.LS in valid_intermediates(f.ls)
        if f.rank == 1:
            assert f.ls == (0,) and f.LS == ()
    assert "ACEBasis(" in repr(basis)


def test_bonds_sizes_symmetry_and_delta_crad():
    cfg = config(["Al", "Ni"], COUNT_CASES[4][1], bonds={
        "ALL": {"radbase": "SBessel", "radparameters": [1.0], "rcut": 5.0},
        "AlNi": {"radbase": "ChebPow", "radparameters": [2.0], "rcut": 6.0},
        "Ni": {"rcut": 4.5, "nradmax": 7}})
    basis = build_basis(cfg)
    assert set(basis.bonds) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    al_ni, ni_al = basis.bonds[(0, 1)], basis.bonds[(1, 0)]
    assert (al_ni.radbase, al_ni.rcut) == (ni_al.radbase, ni_al.rcut) == ("ChebPow", 6.0)
    assert (al_ni.nradbase, al_ni.nradmax, al_ni.lmax) == (5, 3, 2)  # BINARY block
    al_al, ni_ni = basis.bonds[(0, 0)], basis.bonds[(1, 1)]
    assert (al_al.radbase, al_al.nradbase, al_al.nradmax, al_al.lmax) == ("SBessel", 8, 4, 3)
    assert (ni_ni.rcut, ni_ni.nradmax) == (4.5, 7)  # explicit nradmax may only enlarge
    for bond in basis.bonds.values():
        assert bond.crad.shape == (bond.nradmax, bond.lmax + 1, bond.nradbase)
        for n, l, k in np.ndindex(bond.crad.shape):
            assert bond.crad[n, l, k] == (1.0 if n == k else 0.0)
    # every function's radial indices fit its bonds
    for f in basis.functions:
        for mu, n, l in zip(f.mus, f.ns, f.ls):
            bond = basis.bonds[(f.mu0, mu)]
            assert n < (bond.nradbase if f.rank == 1 else bond.nradmax) and l <= bond.lmax


def test_embeddings_precedence_and_defaults():
    cfg = config(["Al", "Ni"], COUNT_CASES[4][1])
    cfg["embeddings"] = {"ALL": {"ndensity": 2, "npot": "FinnisSinclair"},
                         "Ni": {"ndensity": 1, "fs_parameters": [1, 0.5]}}
    basis = build_basis(cfg)
    al, ni = basis.embeddings[0], basis.embeddings[1]
    assert (al.ndensity, al.npot, al.fs_parameters) == (2, "FinnisSinclair", [1, 1, 1, 0.5])
    assert (ni.ndensity, ni.npot, ni.fs_parameters) == (1, "FinnisSinclair", [1, 0.5])
    assert (al.rho_core_cut, al.drho_core_cut) == (100000.0, 250.0)


def test_block_precedence_and_ternary_blocks():
    functions = {"ALL": {"nradmax_by_orders": [2, 1, 1], "lmax_by_orders": [0, 1, 1]},
                 "BINARY": {"nradmax_by_orders": [3], "lmax_by_orders": [0]},
                 "Cu Ni Al": {"nradmax_by_orders": [1, 1, 1, 1], "lmax_by_orders": [0, 0, 0, 0]}}
    basis = build_basis(config(["Al", "Cu", "Ni"], functions))
    by_block = Counter()
    for f in basis.functions:
        block = " ".join(basis.elements[i] for i in sorted({f.mu0, *f.mus}))
        by_block[(basis.elements[f.mu0], block, f.rank)] += 1
    assert by_block[("Al", "Al Ni", 1)] == 3 and by_block[("Al", "Al Ni", 2)] == 0
    assert by_block[("Cu", "Al Cu Ni", 4)] > 0 and by_block[("Al", "Al Cu Ni", 4)] == 0
    assert by_block[("Al", "Al", 1)] == 2


def test_max_degree_budget():
    functions = {"ALL": {"nradmax_by_orders": [6, 4, 3, 2], "lmax_by_orders": [0, 3, 2, 1],
                         "max_degree": 7}}
    basis = build_basis(config(["Al"], functions))
    assert all(sum(f.ns) + f.rank + sum(f.ls) <= 7 for f in basis.functions)
    assert basis.counts()["Al"][1] == 6
    # a per-order budget alone derives the widest n/l bounds it allows
    derived = build_basis(config(["Al"], {"ALL": {"max_degree": [5, 6, 6]}}))
    reference = build_basis(config(["Al"], {"ALL": {"nradmax_by_orders": [5, 5, 4],
                                                    "lmax_by_orders": [0, 4, 3],
                                                    "max_degree": [5, 6, 6]}}))
    assert derived.functions == reference.functions


# ---------------------------------------------------------------- specification dicts

@pytest.mark.parametrize("change,message", [
    (lambda d: d["bonds"]["ALL"].update(radbase="Gauss"), "unknown value 'Gauss'"),
    (lambda d: d.update(elements=["Al", "Xx"]), "unknown element 'Xx'"),
    (lambda d: d["bonds"].update(AlCu={"rcut": 4.0}), "unknown element 'Cu'"),
    (lambda d: d["functions"].update({"Al Cu": {}}), "unknown element 'Cu'"),
    (lambda d: d["embeddings"].update(Cu={}), "Cu"),
    (lambda d: d["functions"]["ALL"].update(lmax_by_orders=[0, 13]), "beyond the Clebsch"),
    (lambda d: d["functions"]["ALL"].update(nradmax_by_orders=[3, 2, 2, 1],
                                            lmax_by_orders=[0, 2, 2, 7]), "at most 6 at rank 4"),
    (lambda d: d["functions"]["ALL"].update(nradmax_by_orders=[1] * 7,
                                            lmax_by_orders=[0] * 7), "7 orders"),
    (lambda d: d["functions"]["ALL"].update(nradmax_by_orders=[3, -1]), "must be >= 0"),
    (lambda d: d["functions"]["ALL"].update(lmax_by_orders=[0, 1, 1]), "differ in length"),
    (lambda d: d["functions"]["ALL"].update(lmax_by_orders=[1, 1]), r"lmax_by_orders\[0\]"),
    (lambda d: d["functions"]["ALL"].update(nradmax=3), "unknown key 'nradmax'"),
    (lambda d: d["functions"].update(number_of_functions_per_element=0), "must be >= 1"),
    (lambda d: d["bonds"]["ALL"].update(rcut="far"), "expected a number"),
    (lambda d: d["bonds"]["ALL"].pop("rcut"), "no 'rcut'"),
    (lambda d: d["embeddings"]["ALL"].update(fs_parameters=[1, 1, 1]), "2 \\* ndensity"),
    (lambda d: d["embeddings"]["ALL"].update(npot="Quadratic"), "unknown value 'Quadratic'"),
    (lambda d: d.update(elements=["Al", "Al"]), "duplicated"),
    (lambda d: d.update(cutoff=5), "unknown key"),
    (lambda d: d["bonds"].update({"Al Ni": {}, "NiAl": {}}), "given twice"),
])
def test_from_dict_errors(change, message):
    cfg = json.loads(json.dumps(config(["Al", "Ni"], {
        "ALL": {"nradmax_by_orders": [3, 2], "lmax_by_orders": [0, 2]}})))
    change(cfg)
    with pytest.raises(ValueError, match=message):
        BasisSpec.from_dict(cfg)


def test_to_dict_round_trip():
    cfg = config(["Ni", "Al"], {
        "number_of_functions_per_element": 50,
        "ALL": {"nradmax_by_orders": [4, 2, 1], "lmax_by_orders": [0, 2, 1], "coefs_init": "zero"},
        ("Al", "Ni"): {"nradmax_by_orders": [3, 2], "lmax_by_orders": [0, 1], "max_degree": 6}},
        bonds={**BONDS, "Al-Ni": {"rcut": 4.0, "NameOfCutoffFunction": "cos",
                                  "core-repulsion": [100, 2]}})
    spec = BasisSpec.from_dict(cfg)
    as_dict = spec.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict  # plain, serialisable
    assert set(as_dict["functions"]) == {"ALL", "Al Ni", "number_of_functions_per_element"}
    assert set(as_dict["bonds"]) == {"ALL", "Al Ni"}
    again = BasisSpec.from_dict(as_dict)
    assert again == spec and again.to_dict() == as_dict
    assert build_basis(again).functions == build_basis(spec).functions
    assert build_basis(cfg).elements == ["Al", "Ni"]


# ---------------------------------------------------------------- C-tilde

def test_bfunction_ms_coefficients():
    ms, coef = bfunction_ms_coefficients(BFunction(0, (0,), (3,), (0,)))
    assert ms.tolist() == [[0]] and coef.tolist() == [1.0]
    ms, coef = bfunction_ms_coefficients(BFunction(0, (1, 1), (0, 0), (1, 1)))
    assert ms.tolist() == [[0, 0], [1, -1]]
    np.testing.assert_allclose(coef, [-1 / SQRT3, 2 / SQRT3])
    ms, _ = bfunction_ms_coefficients(BFunction(0, (0, 1), (0, 0), (1, 1)))
    assert ms.tolist() == [[0, 0], [1, -1]]  # different species: (-1, 1) is not merged in
    ms, _ = bfunction_ms_coefficients(BFunction(0, (0, 0), (0, 1), (1, 1)))
    assert len(ms) == 2 and np.all(ms[:, 0] >= 0)


def test_to_ctilde_folds_couplings_and_drops_zero_rows():
    ls = (1, 1, 1, 1)
    f1 = BFunction(0, (0, 0, 0, 0), (0, 0, 1, 1), ls, (0, 0))
    f2 = BFunction(0, (0, 0, 0, 0), (0, 0, 1, 1), ls, (2, 2))
    f3 = BFunction(1, (0,), (0,), (0,))
    coefficients = np.array([[1.0, 0.0], [0.5, 0.0], [2.0, 3.0]])
    folded = to_ctilde([f1, f2, f3], coefficients)
    assert [(c.mu0, c.rank) for c in folded] == [(0, 4), (1, 1)]
    c4 = folded[0]
    assert np.all(c4.ctildes[:, 1] == 0) and np.all(np.abs(c4.ctildes[:, 0]) > 0)
    # folded evaluation equals the sum of the B-functions
    rng = np.random.default_rng(3)
    vectors, weights = random_environment(rng, {(0, 0, 1), (0, 1, 1)})
    bases = factor_bases(vectors, weights, 1)
    labels = list(zip(f1.mus, f1.ns, f1.ls))
    b_sum = sum(c * full_b(ls, labels, *generalized_cg(ls, f.LS), bases).real
                for f, c in ((f1, 1.0), (f2, 0.5)))
    assert abs(half_b(ls, labels, c4.ms, c4.ctildes[:, 0], bases) - b_sum) < 1e-10 * abs(b_sum)
    assert folded[1].ms.tolist() == [[0]] and folded[1].ctildes.tolist() == [[2.0, 3.0]]
    assert to_ctilde([f3], np.zeros((1, 2))) == []


def test_to_ctilde_matches_pyace():
    pytest.importorskip("pyace")
    from pyace import ACEBBasisSet

    cfg = config(["Al", "Ni"], {"ALL": {"nradmax_by_orders": [3, 2, 2, 1, 1],
                                        "lmax_by_orders": [0, 2, 2, 1, 1]}})
    bconf, _ = pyace_counts(cfg)
    rng = np.random.default_rng(0)
    bconf.set_func_coeffs(list(rng.standard_normal(len(bconf.get_func_coeffs()))))
    index = {"Al": 0, "Ni": 1}
    functions, coefficients = [], []
    for block in bconf.funcspecs_blocks:
        for f in block.funcspecs:
            functions.append(BFunction(index[f.elements[0]],
                                       tuple(index[e] for e in f.elements[1:]),
                                       tuple(n - 1 for n in f.ns), tuple(f.ls), tuple(f.LS)))
            coefficients.append(f.coeffs)
    ours = {(c.mu0, c.mus, c.ns, c.ls): c for c in to_ctilde(functions, coefficients)}
    cbasis = ACEBBasisSet(bconf).to_ACECTildeBasisSet()
    theirs = [f for per_element in list(cbasis.basis_rank1) + list(cbasis.basis)
              for f in per_element]
    assert len(theirs) == len(ours)
    for f in theirs:
        mine = ours[(f.mu0, tuple(f.mus), tuple(n - 1 for n in f.ns), tuple(f.ls))]
        their_ms = np.array(f.ms_combs).reshape(f.num_ms_combs, f.rank)
        their_c = np.array(f.ctildes).reshape(f.num_ms_combs, f.ndensity)
        # same rows up to the order of m's within identical factors (any order: same product)
        groups = list(zip(mine.mus, mine.ns, mine.ls))
        rows = {}
        for row, c in zip(their_ms, their_c):
            key = tuple(merge_equivalent(row[None], np.zeros(1), groups)[0][0])
            rows[key] = rows.get(key, 0) + c
        assert set(rows) == {tuple(r) for r in mine.ms}
        for row, c in zip(mine.ms, mine.ctildes):
            np.testing.assert_allclose(c, rows[tuple(row)], rtol=1e-12, atol=1e-14)
