"""Tests of ace.pace: PACE .yace/.yaml export and import, round trips, broken files, the CLI.

python-ace (pyace) is the oracle: a potential exported by us and evaluated by
``pyace.PyACECalculator`` must agree with our ``ACECalculator``, and a pyace-made file imported
by us must agree with pyace on it.

Tolerances (docs/file-formats.md, "The spline floor"). PACE tabulates g_k, R_nl and the core term
on a grid of deltaSplineBins = 0.001 Å and interpolates with cubic Hermite splines; our core
evaluates them analytically. Measured against PACE's own analytic functions, the splines are off
by ~1e-12 in g and ~2e-9 in dg/dr (per unit g), but by up to ~7e-7 in dg/dr inside ChebExpCos's
final taper [rcut - dcut, rcut] when dcut = 0.01 Å (pacemaker's default: the taper's 4th
derivative is ~(π/dcut)^4/2).

- Exports (EXPORT_*, the figures the README states): our random potentials with dcut >= 0.2 Å
  and the shipped potentials agree with pyace to 1e-11 relative in energy, 4e-7 eV/Å in forces
  and 4e-9 eV/Å^3 in stress (measured worst: 3.7e-12, 3.6e-7, 1.9e-9).
- Imports of pacemaker files and the remaining cases: the issue's targets (energy 1e-8
  relative, forces 1e-6 eV/Å, stress 1e-6 eV/Å^3): ENERGY_TOL etc.
- ChebExpCos with dcut = 0.01 Å: a neighbour inside the taper sets a floor of a few 1e-6 eV/Å
  on forces (FLOOR_* below; test_spline_floor measures it), and the same potential exported
  with deltaSplineBins = 1e-4 agrees to ~2e-9 eV/Å again, which shows the floor is PACE's
  spline and nothing else.
"""
import json
import os
import re

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk

from ace.basis import build_basis, to_ctilde
from ace.calculator import ACECalculator, load_potential
from ace.pace import (PaceCompatibilityWarning, PaceExportError, PaceFormatError,
                      export_pace_yaml, export_yace, load_pace, load_yace)
from ace.potential import ACEPotential

pyace = pytest.importorskip("pyace")

ENERGY_TOL = 1e-8  # relative
FORCE_TOL = 1e-6  # eV/Å
STRESS_TOL = 1e-6  # eV/Å^3
# exports of potentials away from the spline floor: the README's figures
EXPORT_ENERGY_TOL = 1e-11  # relative
EXPORT_FORCE_TOL = 4e-7  # eV/Å
EXPORT_STRESS_TOL = 4e-9  # eV/Å^3
EXPORT_TOLS = {"energy_tol": EXPORT_ENERGY_TOL, "force_tol": EXPORT_FORCE_TOL,
               "stress_tol": EXPORT_STRESS_TOL}
# ChebExpCos with dcut = 0.01 Å (pacemaker's default) and deltaSplineBins = 0.001 Å: PACE's
# spline floor. Measured with these coefficient sizes (|F| ~ 1-10 eV/Å) on clusters with many
# pairs inside the taper: forces up to 3e-6 eV/Å, energies 4e-10 (relative); on random
# periodic cells up to 1.6e-6 eV/Å and stress 2e-8 eV/Å^3. Asserted with a margin:
FLOOR_FORCE_TOL = 2e-5
FLOOR_STRESS_TOL = 2e-7


# ---------------------------------------------------------------- factories

def random_potential(elements, radbase="ChebExpCos", inner="distance",
                     orders=((4, 3, 2), (0, 2, 1)), embeddings=None, seed=0, dcut=0.25, e0=False):
    """Our basis for a pacemaker-style dict with random crad (symmetric) and coefficients.

    Coefficients shrink with the rank so that energies and forces have realistic sizes
    (~1 eV/atom, ~1-10 eV/Å): the absolute force tolerance is then meaningful.
    """
    rng = np.random.default_rng(seed)
    bond = {"radbase": radbase, "radparameters": [float(rng.uniform(2.0, 6.0))], "rcut": 5.0,
            "dcut": dcut, "inner_cutoff_type": inner}
    if inner == "distance":
        bond.update({"r_in": 2.0, "delta_in": 0.5, "core-repulsion": [200.0, 1.5]})
    elif inner == "zbl":
        bond.update({"r_in": 1.9, "delta_in": 0.4, "core-repulsion": [1.0, 1.0]})
    else:
        bond.update({"core-repulsion": [200.0, 1.5]})
    if embeddings is None:
        embeddings = {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 2,
                              "fs_parameters": [1.0, 1.0, 0.8, 0.5]}}
    config = {"elements": list(elements), "embeddings": embeddings, "bonds": {"ALL": bond},
              "functions": {"ALL": {"nradmax_by_orders": list(orders[0]),
                                    "lmax_by_orders": list(orders[1])}}}
    basis = build_basis(config)
    n = len(basis.elements)
    for i in range(n):
        for j in range(i, n):
            crad = basis.bonds[(i, j)].crad
            crad = crad + 0.2 * rng.standard_normal(crad.shape)
            basis.bonds[(i, j)].crad = crad
            basis.bonds[(j, i)].crad = crad.copy()
    ndmax = max(e.ndensity for e in basis.embeddings.values())
    scale = np.array([0.3 * 0.3 ** (f.rank - 1) for f in basis.functions])
    coefficients = scale[:, None] * rng.standard_normal((basis.n_functions, ndmax))
    for k, f in enumerate(basis.functions):
        coefficients[k, basis.embeddings[f.mu0].ndensity:] = 0.0
    pot = ACEPotential.from_basis(basis, coefficients)
    if e0:
        pot.e0 = rng.uniform(-4.0, -0.5, n)
    return pot


def random_structure(elements, n_atoms, periodic, seed, dmin=1.9, density=0.055):
    """Random positions with a minimum distance: a skewed periodic cell or a cluster."""
    rng = np.random.default_rng(seed)
    length = (n_atoms / density) ** (1 / 3)
    cell = length * (np.eye(3) + rng.uniform(-0.08, 0.08, (3, 3)))
    inverse = np.linalg.inv(cell)
    positions = []
    while len(positions) < n_atoms:
        x = rng.uniform(0, 1, 3) @ cell
        if positions:
            d = np.array(positions) - x
            if periodic:
                frac = d @ inverse
                d = (frac - np.round(frac)) @ cell
            if np.linalg.norm(d, axis=1).min() < dmin:
                continue
        positions.append(x)
    symbols = [elements[k] for k in rng.integers(0, len(elements), n_atoms)]
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=periodic)
    if not periodic:
        atoms.center(vacuum=2.0)
    return atoms


def structures(elements, seed, dmin):
    return [random_structure(elements, 20, True, seed, dmin),
            random_structure(elements, 22, True, seed + 1, dmin),
            random_structure(elements, 12, False, seed + 2, dmin)]


def differences(calc_a, calc_b, atoms_list):
    """Largest (relative energy, force, stress) differences of two calculators."""
    worst = np.zeros(3)
    for atoms in atoms_list:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = calc_a, calc_b
        ea, eb = a.get_potential_energy(), b.get_potential_energy()
        worst[0] = max(worst[0], abs(ea - eb) / abs(eb))
        worst[1] = max(worst[1], np.abs(a.get_forces() - b.get_forces()).max())
        if atoms.pbc.all():
            worst[2] = max(worst[2], np.abs(a.get_stress() - b.get_stress()).max())
    return worst


def assert_agree(worst, force_tol=FORCE_TOL, stress_tol=STRESS_TOL, energy_tol=ENERGY_TOL):
    assert worst[0] <= energy_tol, f"energy differs by {worst[0]:.2e} (relative)"
    assert worst[1] <= force_tol, f"forces differ by {worst[1]:.2e} eV/Å"
    assert worst[2] <= stress_tol, f"stress differs by {worst[2]:.2e} eV/Å^3"


def pyace_calculator(path):
    return pyace.PyACECalculator(os.fspath(path))


# ---------------------------------------------------------------- our potentials -> PACE

EXPORT_CASES = {
    # one element, ranks 1-5, exponential core below r_in (distance), two densities
    "Al-ChebExpCos-distance-FS2": dict(
        elements=["Al"], radbase="ChebExpCos", inner="distance",
        orders=((6, 3, 2, 2, 1), (0, 3, 2, 1, 1)), dmin=1.6),
    # two elements, ZBL core (atoms inside r_in - delta_in are pure ZBL), FinnisSinclair
    "AlNi-SBessel-zbl-FS": dict(
        elements=["Al", "Ni"], radbase="SBessel", inner="zbl", orders=((4, 3, 2, 1), (0, 2, 2, 1)),
        embeddings={"ALL": {"npot": "FinnisSinclair", "ndensity": 2,
                            "fs_parameters": [1.0, 1.0, 0.7, 0.5]}}, dmin=1.2),
    # three elements, density-type core, different embeddings per element (linear, 2, 3 densities)
    "AlCuNi-ChebPow-density-mixed": dict(
        elements=["Al", "Cu", "Ni"], radbase="ChebPow", inner="density",
        orders=((3, 2, 1), (0, 2, 1)),
        embeddings={"ALL": {"rho_core_cut": 1.5, "drho_core_cut": 1.0},  # F blended off
                    "Al": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                           "fs_parameters": [1.0, 1.0]},
                    "Cu": {"npot": "FinnisSinclair", "ndensity": 2,
                           "fs_parameters": [1.0, 1.0, 0.5, 0.5]},
                    "Ni": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 3,
                           "fs_parameters": [1.0, 1.0, 0.5, 0.5, 0.3, 2.0]}}, dmin=1.7),
    # two elements, linear embedding, up to rank 6
    "AlNi-ChebExpCos-linear-rank6": dict(
        elements=["Al", "Ni"], radbase="ChebExpCos", inner="distance",
        orders=((3, 2, 1, 1, 1, 1), (0, 2, 1, 1, 1, 1)),
        embeddings={"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                            "fs_parameters": [1.0, 1.0]}}, dmin=1.7),
}


@pytest.mark.parametrize("name", list(EXPORT_CASES))
def test_export_agrees_with_pyace(name, tmp_path):
    case = dict(EXPORT_CASES[name])
    dmin = case.pop("dmin")
    pot = random_potential(seed=len(name), e0=True, **case)
    atoms_list = structures(case["elements"], seed=len(name), dmin=dmin)
    ours = ACECalculator(pot)

    yace = tmp_path / "pot.yace"
    export_yace(pot, yace)  # E0 included
    assert_agree(differences(pyace_calculator(yace), ours, atoms_list), **EXPORT_TOLS)

    # importing our own .yace recovers the B-functions: same evaluation to round-off
    back = load_yace(yace)
    assert back.elements == pot.elements and np.array_equal(back.e0, pot.e0)
    assert_agree(differences(ACECalculator(back), ours, atoms_list),
                 force_tol=1e-10, stress_tol=1e-12, energy_tol=1e-12)

    pot.e0[:] = 0.0  # a .yaml cannot carry E0 into the energy
    ours = ACECalculator(pot)  # a calculator keeps its own copy of the potential
    pace_yaml = tmp_path / "pot.yaml"
    export_pace_yaml(pot, pace_yaml)
    assert_agree(differences(pyace_calculator(pace_yaml), ours, atoms_list), **EXPORT_TOLS)


def test_yace_keeps_asymmetric_bonds_yaml_refuses_them(tmp_path):
    pot = random_potential(["Al", "Ni"], orders=((3, 2), (0, 2)), seed=3)
    pot.bonds[(0, 1)].crad = pot.bonds[(0, 1)].crad * 1.3
    atoms_list = structures(["Al", "Ni"], seed=30, dmin=1.9)
    export_yace(pot, tmp_path / "a.yace")
    assert_agree(differences(pyace_calculator(tmp_path / "a.yace"), ACECalculator(pot), atoms_list),
                 **EXPORT_TOLS)
    with pytest.raises(PaceExportError, match="Al-Ni and Ni-Al differ"):
        export_pace_yaml(pot, tmp_path / "a.yaml")
    assert not (tmp_path / "a.yaml").exists()


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "potentials")


def _is_ace_potential(name):
    """ACE potentials only: traditional ones (kind: traditional) have no PACE format."""
    from ace.physical.potential import file_kind
    with open(os.path.join(SHIPPED, name)) as fh:
        return file_kind(fh.read(4096)) is None


SHIPPED_POTENTIALS = sorted(name for name in os.listdir(SHIPPED)
                            if name.endswith(".yaml") and not name.endswith(".config.yaml")
                            and _is_ace_potential(name))


def test_shipped_potentials_are_found():
    assert len(SHIPPED_POTENTIALS) >= 4, SHIPPED_POTENTIALS


@pytest.mark.parametrize("name", SHIPPED_POTENTIALS)
def test_shipped_potential_exports_agree_with_pyace(name, tmp_path):
    """Each shipped potential, exported to .yace (E0 included), on a rattled crystal of its
    element (ASE's reference structure and lattice constant): the README's export figures."""
    pot = ACEPotential.load(os.path.join(SHIPPED, name))
    atoms_list = []
    for element in pot.elements:
        atoms = bulk(element, cubic=True).repeat(2)
        atoms.rattle(0.1, seed=len(atoms_list))
        atoms_list.append(atoms)
    export_yace(pot, tmp_path / "shipped.yace")
    worst = differences(pyace_calculator(tmp_path / "shipped.yace"), ACECalculator(pot),
                        atoms_list)
    assert_agree(worst, **EXPORT_TOLS)


# ---------------------------------------------------------------- pacemaker potentials -> ours

def pyace_config(elements, orders, radbase="ChebExpCos", dcut=0.01, ndensity=2,
                 npot="FinnisSinclairShiftedScaled", inner=None, seed=0):
    """A pacemaker basis (create_multispecies_basis_config) with random coefficients and crad."""
    rng = np.random.default_rng(seed)
    fs = [1.0, 1.0, 1.0, 0.5, 0.6, 0.75][:2 * ndensity]
    bond = {"radbase": radbase, "radparameters": [float(rng.uniform(2.0, 6.0))], "rcut": 5.0,
            "dcut": dcut}
    if inner == "zbl":
        bond.update({"inner_cutoff_type": "zbl", "r_in": 1.9, "delta_in": 0.4,
                     "core-repulsion": [1.0, 1.0]})
    elif inner == "distance":
        bond.update({"inner_cutoff_type": "distance", "r_in": 2.0, "delta_in": 0.5,
                     "core-repulsion": [200.0, 1.5]})
    config = {"deltaSplineBins": 0.001, "elements": list(elements),
              "embeddings": {"ALL": {"npot": npot, "fs_parameters": fs, "ndensity": ndensity}},
              "bonds": {"ALL": bond},
              "functions": {"ALL": {"nradmax_by_orders": list(orders[0]),
                                    "lmax_by_orders": list(orders[1])}}}
    bconf = pyace.create_multispecies_basis_config(config)
    blocks = bconf.funcspecs_blocks
    crads = {}
    for block in blocks:
        if block.radcoefficients:  # the same crad for the blocks "A B" and "B A"
            key = tuple(sorted(block.elements_vec[:2]))
            if key not in crads:
                crad = np.array(block.radcoefficients)
                crads[key] = (crad + 0.2 * rng.standard_normal(crad.shape)).tolist()
            block.radcoefficients = crads[key]
    bconf.funcspecs_blocks = blocks
    ranks = [len(f.ns) for block in bconf.funcspecs_blocks for f in block.funcspecs]
    scale = np.repeat([0.3 * 0.3 ** (r - 1) for r in ranks], ndensity)
    bconf.set_func_coeffs(list(scale * rng.standard_normal(len(bconf.get_func_coeffs()))))
    return bconf


PYACE_CASES = {
    "Cu-rank5": dict(elements=["Cu"], orders=((6, 3, 2, 2, 1), (0, 3, 2, 1, 1)), dcut=0.2),
    "AlNi-SBessel-zbl": dict(elements=["Al", "Ni"], orders=((5, 3, 2, 1), (0, 2, 2, 1)),
                             radbase="SBessel", ndensity=1, npot="FinnisSinclair", inner="zbl",
                             dcut=0.2),
    "AlCuNi-ChebPow": dict(elements=["Al", "Cu", "Ni"], orders=((3, 2, 1), (0, 2, 1)),
                           radbase="ChebPow", ndensity=3, inner="distance"),
    "AlNi-pacemaker-default-dcut": dict(elements=["Al", "Ni"], orders=((5, 3, 2), (0, 2, 2)),
                                        dcut=0.01),
}


@pytest.mark.parametrize("name", list(PYACE_CASES))
def test_pyace_potentials_imported(name, tmp_path):
    case = PYACE_CASES[name]
    bconf = pyace_config(seed=len(name), **case)
    yaml_path, yace_path = tmp_path / "p.yaml", tmp_path / "p.yace"
    bconf.save(os.fspath(yaml_path))
    pyace.ACEBBasisSet(bconf).to_ACECTildeBasisSet().save_yaml(os.fspath(yace_path))
    dmin = 1.2 if case.get("inner") == "zbl" else 1.7
    atoms_list = structures(case["elements"], seed=7, dmin=dmin)
    # ChebExpCos with dcut < 0.1 Å: PACE's spline floor (module docstring)
    tight = case.get("radbase", "ChebExpCos") != "ChebExpCos" or case.get("dcut", 0.01) >= 0.1
    tols = {} if tight else {"force_tol": FLOOR_FORCE_TOL, "stress_tol": FLOOR_STRESS_TOL}
    from_yaml, from_yace = load_pace(yaml_path), load_pace(yace_path)
    assert from_yaml.n_functions == bconf.total_number_of_functions
    for path, pot in ((yaml_path, from_yaml), (yace_path, from_yace)):
        assert_agree(differences(pyace_calculator(path), ACECalculator(pot), atoms_list), **tols)
    # the .yace import (C-tilde -> B by least squares) is the same potential as the .yaml one
    assert_agree(differences(ACECalculator(from_yace), ACECalculator(from_yaml), atoms_list),
                 force_tol=1e-10, stress_tol=1e-12, energy_tol=1e-12)


def taper_clusters(elements, rcut, dcut, seed, n_clusters=12):
    """Clusters with many pairs inside the final taper [rcut - dcut, rcut]."""
    rng = np.random.default_rng(seed)
    clusters = []
    for k in range(n_clusters):
        atoms = random_structure(elements, 8, False, seed + k, dmin=2.2)
        for _ in range(6):
            direction = rng.normal(size=3)
            centre = atoms.positions[rng.integers(len(atoms))]
            atoms.append(elements[rng.integers(len(elements))])
            atoms.positions[-1] = centre + direction / np.linalg.norm(direction) * (
                rcut - rng.uniform(0.0, dcut))
        clusters.append(atoms)
    return clusters


def test_pacemaker_potential_without_pair_blocks(tmp_path):
    """Pairs without a block (UNARY-only functions; or only "Al Ni" without "Ni Al"): PACE
    gives them its default bond, which contributes nothing; so do we, and export keeps them out."""
    config = {"deltaSplineBins": 0.001, "elements": ["Al", "Ni"],
              "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                     "fs_parameters": [1.0, 1.0]}},
              "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [1.0], "rcut": 5.0,
                                "dcut": 0.2}},
              "functions": {"UNARY": {"nradmax_by_orders": [4, 3, 2], "lmax_by_orders": [0, 2, 1]}}}
    bconf = pyace.create_multispecies_basis_config(config)
    rng = np.random.default_rng(0)
    bconf.set_func_coeffs(list(0.1 * rng.standard_normal(len(bconf.get_func_coeffs()))))
    bconf.save(os.fspath(tmp_path / "in.yaml"))
    pot = load_pace(tmp_path / "in.yaml")
    atoms_list = structures(["Al", "Ni"], seed=21, dmin=1.8)
    ours = ACECalculator(pot)
    assert_agree(differences(pyace_calculator(tmp_path / "in.yaml"), ours, atoms_list))
    export_pace_yaml(pot, tmp_path / "out.yaml")
    assert "speciesblock: Al Ni" not in (tmp_path / "out.yaml").read_text()
    export_yace(pot, tmp_path / "out.yace")  # a .yace names every pair: PACE's default bond
    for path in ("out.yaml", "out.yace"):
        assert_agree(differences(pyace_calculator(tmp_path / path), ours, atoms_list),
                     **EXPORT_TOLS)

    # only the block "Al Ni" (bond Al-Ni): PACE uses its default bond for Ni-Al
    bconf = pyace_config(["Al", "Ni"], ((4, 3, 2), (0, 2, 1)), dcut=0.2, inner="distance", seed=3)
    bconf.save(os.fspath(tmp_path / "full.yaml"))
    blocks = (tmp_path / "full.yaml").read_text().split("  - speciesblock: ")
    (tmp_path / "one.yaml").write_text("  - speciesblock: ".join(
        block for block in blocks if not block.startswith("Ni Al")))
    pot = load_pace(tmp_path / "one.yaml")
    assert pot.bonds[(1, 0)].rcut == 1.0 and pot.bonds[(0, 1)].rcut == 5.0
    ours = ACECalculator(pot)
    export_pace_yaml(pot, tmp_path / "one_out.yaml")
    assert "speciesblock: Ni Al" not in (tmp_path / "one_out.yaml").read_text()
    export_yace(pot, tmp_path / "one_out.yace")
    atoms_list = structures(["Al", "Ni"], seed=3, dmin=1.6)
    assert_agree(differences(pyace_calculator(tmp_path / "one.yaml"), ours, atoms_list))
    for path in ("one_out.yaml", "one_out.yace"):
        assert_agree(differences(pyace_calculator(tmp_path / path), ours, atoms_list),
                     **EXPORT_TOLS)


def test_spline_floor(tmp_path):
    """dcut = 0.01: the differences come from PACE's spline grid and shrink with a finer grid."""
    bconf = pyace_config(["Al", "Ni"], ((5, 3, 2), (0, 2, 2)), dcut=0.01, seed=6)
    bconf.save(os.fspath(tmp_path / "p.yaml"))
    pot = load_pace(tmp_path / "p.yaml")
    atoms_list = taper_clusters(["Al", "Ni"], 5.0, 0.01, seed=100)
    ours = ACECalculator(pot)
    coarse = differences(pyace_calculator(tmp_path / "p.yaml"), ours, atoms_list)
    export_yace(pot, tmp_path / "fine.yace", delta_spline_bins=1e-4)
    fine = differences(pyace_calculator(tmp_path / "fine.yace"), ours, atoms_list)
    assert_agree(coarse, force_tol=FLOOR_FORCE_TOL, stress_tol=FLOOR_STRESS_TOL)
    assert_agree(fine)
    assert fine[1] < coarse[1] / 30  # the floor falls ~h^3 with the grid step h


# ---------------------------------------------------------------- round trips

def _function_table(pot):
    return {(f.mu0, f.mus, f.ns, f.ls, f.LS): pot.coefficients[k]
            for k, f in enumerate(pot.functions)}


def test_round_trip_ours_yaml_ours_is_exact(tmp_path):
    pot = random_potential(["Al", "Cu", "Ni"], orders=((3, 2, 2, 1), (0, 2, 1, 1)), seed=4)
    pot.metadata = {"fit": {"config": {"train": "x.xyz"}}, "note": "hello: 'quoted' \"text\""}
    export_pace_yaml(pot, tmp_path / "p.yaml")
    back = load_pace(tmp_path / "p.yaml")
    assert back.elements == pot.elements
    assert _function_table(back).keys() == _function_table(pot).keys()
    for key, c in _function_table(pot).items():
        assert np.array_equal(_function_table(back)[key], c)
    for pair, bond in pot.bonds.items():
        other = back.bonds[pair]
        assert np.array_equal(other.crad, bond.crad)
        assert (other.radbase, other.rcut, other.dcut, other.r_in, other.delta_in,
                other.core_repulsion) == (bond.radbase, bond.rcut, bond.dcut, bond.r_in,
                                          bond.delta_in, bond.core_repulsion)
    assert back.embeddings == pot.embeddings
    assert back.metadata["fit"] == pot.metadata["fit"]
    assert back.metadata["note"] == pot.metadata["note"]


def test_round_trip_ours_yace_ours_recovers_coefficients(tmp_path):
    pot = random_potential(["Al", "Ni"], orders=((4, 3, 2, 2, 1), (0, 2, 2, 1, 1)), seed=6)
    export_yace(pot, tmp_path / "p.yace")
    back = load_pace(tmp_path / "p.yace")
    # same couplings (our independent set per tuple), same coefficients up to round-off
    mine, theirs = _function_table(pot), _function_table(back)
    assert mine.keys() == theirs.keys()
    worst = max(np.abs(theirs[k] - c).max() for k, c in mine.items())
    assert worst <= 1e-12 * max(np.abs(c).max() for c in mine.values())
    folded_a = to_ctilde(pot.functions, pot.coefficients)
    folded_b = to_ctilde(back.functions, back.coefficients)
    for a, b in zip(folded_a, folded_b):
        assert (a.mus, a.ns, a.ls) == (b.mus, b.ns, b.ls)
        np.testing.assert_allclose(b.ctildes, a.ctildes, rtol=1e-12, atol=1e-14)


def test_round_trip_pacemaker_yaml_ours_yaml(tmp_path):
    bconf = pyace_config(["Al", "Ni"], ((4, 3, 2, 1), (0, 2, 2, 1)), dcut=0.2, seed=8)
    bconf.metadata["user"] = "someone"
    bconf.metadata["starttime"] = "2024-01-02 03:04:05.678901"
    bconf.metadata["reference_energy"] = json.dumps({"Al": -3.5, "Ni": -5.25, "shift": 0.25})
    bconf.save(os.fspath(tmp_path / "in.yaml"))
    pot = load_pace(tmp_path / "in.yaml")
    assert np.all(pot.e0 == 0)  # pyace does not add the reference energies
    export_pace_yaml(pot, tmp_path / "out.yaml")
    again = pyace.BBasisConfiguration(os.fspath(tmp_path / "out.yaml"))
    assert dict(again.metadata)["user"] == "someone"
    assert dict(again.metadata)["starttime"] == "2024-01-02 03:04:05.678901"
    assert json.loads(dict(again.metadata)["reference_energy"])["Ni"] == -5.25

    def specs(conf):
        return sorted((f.elements, tuple(f.ns), tuple(f.ls), tuple(f.LS), tuple(f.coeffs))
                      for block in conf.funcspecs_blocks for f in block.funcspecs)

    assert specs(again) == specs(bconf)
    atoms_list = structures(["Al", "Ni"], seed=3, dmin=1.8)
    worst = differences(pyace_calculator(tmp_path / "out.yaml"),
                        pyace_calculator(tmp_path / "in.yaml"), atoms_list)
    assert_agree(worst, force_tol=1e-10, stress_tol=1e-12, energy_tol=1e-12)
    # and to .yace: pyace on our C-tilde file = pyace on its own conversion
    export_yace(pot, tmp_path / "ours.yace")
    pyace.ACEBBasisSet(bconf).to_ACECTildeBasisSet().save_yaml(os.fspath(tmp_path / "theirs.yace"))
    worst = differences(pyace_calculator(tmp_path / "ours.yace"),
                        pyace_calculator(tmp_path / "theirs.yace"), atoms_list)
    assert_agree(worst, force_tol=1e-10, stress_tol=1e-12, energy_tol=1e-12)

    with_reference = load_pace(tmp_path / "in.yaml", reference_energy=True)
    np.testing.assert_allclose(with_reference.e0, [-3.75, -5.5])  # E_ref - shift


def test_e0_and_yaml(tmp_path):
    pot = random_potential(["Al", "Ni"], orders=((3, 2), (0, 1)), seed=9, e0=True)
    with pytest.raises(PaceExportError, match="E0"):
        export_pace_yaml(pot, tmp_path / "p.yaml")
    export_pace_yaml(pot, tmp_path / "p.yaml", e0_to_metadata=True)
    atoms = structures(["Al", "Ni"], seed=2, dmin=1.9)[0]
    ours = atoms.copy()
    ours.calc = ACECalculator(pot)
    theirs = atoms.copy()
    theirs.calc = pyace_calculator(tmp_path / "p.yaml")
    e0_sum = sum(pot.e0[pot.elements.index(s)] for s in atoms.get_chemical_symbols())
    expected = ours.get_potential_energy() - e0_sum
    assert abs(theirs.get_potential_energy() - expected) < 1e-8 * abs(e0_sum)
    assert np.array_equal(load_pace(tmp_path / "p.yaml", reference_energy=True).e0, pot.e0)
    assert np.all(load_pace(tmp_path / "p.yaml").e0 == 0)


# ---------------------------------------------------------------- refusals and PACE differences

def test_export_refuses_what_pace_evaluates_differently(tmp_path):
    pot = random_potential(["Al"], inner="zbl", orders=((3, 2), (0, 1)), seed=1)
    for bond in pot.bonds.values():
        bond.r_in, bond.delta_in = 0.8, 0.0
    with pytest.raises(PaceExportError, match="below 1 Å"):
        export_yace(pot, tmp_path / "p.yace")
    pot = random_potential(["Al"], inner="density", orders=((3, 2), (0, 1)), seed=1)
    for bond in pot.bonds.values():
        bond.r_in, bond.delta_in = 1.5, 0.2
    with pytest.raises(PaceExportError, match="density"):
        export_pace_yaml(pot, tmp_path / "p.yaml")
    assert list(tmp_path.iterdir()) == []


def test_import_warns_where_pace_differs(tmp_path):
    bconf = pyace_config(["Al"], ((3, 2), (0, 1)), inner="zbl", dcut=0.2, seed=1)
    bconf.save(os.fspath(tmp_path / "p.yaml"))
    text = re.sub(r"delta_in: \S+", "delta_in: 0", (tmp_path / "p.yaml").read_text())
    (tmp_path / "p.yaml").write_text(re.sub(r"r_in: \S+", "r_in: 0.9", text))
    with pytest.warns(PaceCompatibilityWarning, match="below 1 Å"):
        load_pace(tmp_path / "p.yaml")


# ---------------------------------------------------------------- broken and unsupported files

@pytest.fixture(scope="module")
def pace_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pace")
    bconf = pyace_config(["Al", "Ni"], ((3, 2, 1), (0, 1, 1)), dcut=0.2, seed=2)
    bconf.save(os.fspath(directory / "p.yaml"))
    pyace.ACEBBasisSet(bconf).to_ACECTildeBasisSet().save_yaml(os.fspath(directory / "p.yace"))
    return {"yaml": (directory / "p.yaml").read_text(), "yace": (directory / "p.yace").read_text()}


def _first(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


def _break_ctilde(text):
    """Scale one coefficient of the first rank-2 function with ls = [1, 1]: not invariant."""
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if "rank: 2" in line and "ls: [1, 1]" in line:
            head, tail = line.split("ctildes: [")
            first, rest = tail.split(",", 1)
            lines[k] = f"{head}ctildes: [{float(first) * 1.5!r},{rest}"
            return "\n".join(lines)
    raise AssertionError("no rank-2 function with ls [1, 1]")


BROKEN = {
    "yaml-truncated": ("yaml", lambda t: t[:int(0.6 * len(t))], "invalid YAML|missing|expected"),
    "yaml-no-global": ("yaml", lambda t: _first(t, "global:", "globals:"), "missing key 'global'"),
    "yaml-crad-shape": ("yaml", lambda t: _first(t, "nradbaseij: 3", "nradbaseij: 4"),
                        "radcoefficients"),
    "yaml-coefficients": ("yaml", lambda t: _first(t, "c: [", "c: [1.0, "), "coefficients"),
    "yaml-chebLinear": ("yaml", lambda t: t.replace("radbase: ChebExpCos", "radbase: ChebLinear"),
                        "ChebLinear"),
    "yaml-npot": ("yaml", lambda t: t.replace("npoti: FinnisSinclairShiftedScaled", "npoti: Exp"),
                  "embedding 'Exp'"),
    "yaml-inner-types": ("yaml", lambda t: _first(t, "inner_cutoff_type: distance",
                                                  "inner_cutoff_type: density"),
                         "inner_cutoff_type"),
    "yaml-coupling": ("yaml", lambda t: _first(t, "lint: [0]", "lint: [3]"), "coupling"),
    "yaml-not-a-number": ("yaml", lambda t: _first(t, "rcutij: 5", "rcutij: five"), "rcutij"),
    "yace-truncated": ("yace", lambda t: t[:int(0.7 * len(t))], "invalid YAML|missing|expected"),
    "yace-cut-at-line": ("yace", lambda t: t[:t.index("functions:")], "missing key 'functions'"),
    "yace-no-E0": ("yace", lambda t: _first(t, "E0:", "E1:"), "missing key 'E0'"),
    "yace-ctildes": ("yace", lambda t: _first(t, "ctildes: [", "ctildes: [1.0, "), "ctildes"),
    "yace-not-invariant": ("yace", _break_ctilde, "not a combination"),
    "yace-acejl": ("yace", lambda t: t.replace("radbasename: ChebExpCos",
                                               "radbasename: ACE.jl.base"), "ACE.jl"),
    "yace-missing-bond": ("yace", lambda t: "\n".join(ln for ln in t.splitlines()
                                                      if not ln.strip().startswith("[0, 1]:")),
                          "missing bonds"),
    "yace-bad-species": ("yace", lambda t: _first(t, "mu0: 0", "mu0: 1"), "mu0"),
    "old-ace-format": ("yace", lambda t: "nelements=1\nelements: Al\n", r"\.ace"),
    "not-a-mapping": ("yace", lambda t: "- just\n- a list\n", "not a PACE potential"),
    "empty": ("yace", lambda t: "", "not a PACE potential"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_files_fail_clearly(name, pace_files, tmp_path):
    kind, mutate, message = BROKEN[name]
    path = tmp_path / f"broken.{kind}"
    path.write_text(mutate(pace_files[kind]))
    with pytest.raises(PaceFormatError, match=message) as info:
        load_pace(path)
    assert str(path) in str(info.value)


def test_intact_files_load(pace_files, tmp_path):
    for kind, text in pace_files.items():
        path = tmp_path / f"ok.{kind}"
        path.write_text(text)
        assert load_pace(path).n_functions > 0


def test_yace_element_order_and_reader_details(pace_files, tmp_path):
    """A .yace with elements not in alphabetical order (e.g. from ACE.jl) maps to ours; numbers
    PyYAML does not read as floats (1e-05) and the element 'No' are read correctly."""
    data = yaml.safe_load(pace_files["yace"].replace("[0, 1]:", "'01':").replace("[1, 0]:", "'10':")
                          .replace("[0, 0]:", "'00':").replace("[1, 1]:", "'11':"))
    swap = {0: 1, 1: 0}
    lines = ["elements: [Ni, Al]", "E0: [1e-05, 0.5]", "deltaSplineBins: 0.001", "embeddings:"]
    for mu in (1, 0):
        lines.append(f"  {swap[mu]}: {json.dumps(data['embeddings'][mu])}")
    lines.append("bonds:")
    for key, bond in data["bonds"].items():
        i, j = int(key[0]), int(key[1])
        lines.append(f"  [{swap[i]}, {swap[j]}]: {json.dumps(bond)}")
    lines.append("functions:")
    for mu, functions in data["functions"].items():
        lines.append(f"  {swap[mu]}:")
        for f in functions:
            f = dict(f, mu0=swap[f["mu0"]], mus=[swap[m] for m in f["mus"]])
            lines.append(f"    - {json.dumps(f)}")
    (tmp_path / "swapped.yace").write_text("\n".join(lines) + "\n")
    (tmp_path / "p.yace").write_text(pace_files["yace"])
    swapped, original = load_pace(tmp_path / "swapped.yace"), load_pace(tmp_path / "p.yace")
    assert swapped.elements == ["Al", "Ni"] and list(swapped.e0) == [0.5, 1e-05]
    atoms_list = structures(["Al", "Ni"], seed=1, dmin=1.9)[:1]
    original.e0 = swapped.e0
    assert_agree(differences(ACECalculator(swapped), ACECalculator(original), atoms_list),
                 force_tol=1e-10, stress_tol=1e-12, energy_tol=1e-12)
    nobelium = tmp_path / "no.yace"
    nobelium.write_text(pace_files["yace"].replace("elements: [Al, Ni]", "elements: [Al, No]"))
    assert load_pace(nobelium).elements == ["Al", "No"]


# ---------------------------------------------------------------- entry points

def test_calculator_and_cli(tmp_path, capsys):
    import argparse

    from ace.cli import convert, export, info

    pot = random_potential(["Al", "Ni"], orders=((3, 2), (0, 1)), seed=12, e0=True)
    pot.save(tmp_path / "ours.yaml")
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    export.add_parser(commands)
    convert.add_parser(commands)

    def run(*argv):
        args = parser.parse_args(argv)
        return args.run(args)

    assert run("export", str(tmp_path / "ours.yaml"), "-o", str(tmp_path / "p.yace")) == 0
    assert "pair_coeff * * " in capsys.readouterr().out
    assert run("export", str(tmp_path / "ours.yaml"), "-o", str(tmp_path / "p.yaml")) == 1
    assert "E0" in capsys.readouterr().err
    assert run("export", str(tmp_path / "ours.yaml"), "-o", str(tmp_path / "p.yaml"),
               "--e0-to-metadata") == 0
    assert run("convert", str(tmp_path / "p.yace"), "-o", str(tmp_path / "back.yaml")) == 0
    assert run("convert", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "ref.yaml"),
               "--reference-energy") == 0
    assert run("export", str(tmp_path / "missing.yace"), "-o", str(tmp_path / "x.yace")) == 1
    from ace.cli import main  # registered in the ace command
    assert main(["convert", str(tmp_path / "p.yace"), "-o", str(tmp_path / "again.yace")]) == 0
    capsys.readouterr()

    atoms = structures(["Al", "Ni"], seed=4, dmin=1.9)[0]
    reference = atoms.copy()
    reference.calc = ACECalculator(pot)
    for name in ("p.yace", "back.yaml", "ref.yaml"):  # PACE files load through ACECalculator
        other = atoms.copy()
        other.calc = ACECalculator(str(tmp_path / name))
        assert abs(other.get_potential_energy() - reference.get_potential_energy()) < 1e-9
    summary = info.describe(load_potential(tmp_path / "p.yace"))
    assert summary["n_functions"] == pot.n_functions and summary["elements"] == ["Al", "Ni"]
