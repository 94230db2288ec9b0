"""Short NVE molecular dynamics conserves the total energy.

A random potential is not bound: its atoms may collapse or fly apart, which makes an energy-drift
check meaningless (or trivially hard). So the potential here is random where it can be (crad, the
second, sqrt-like density of the Finnis-Sinclair embedding) and fitted where it must be: the
linear density and E0 are a small least-squares fit, through the core's design rows, to ASE's EMT
on rattled and strained Cu-Ni cells. The result is a smooth, bound, non-linear ACE potential near
EMT; 200 velocity-Verlet steps of 1 fs at 300 K must keep E_kin + E_pot within 1e-4 eV/atom.
"""
import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet
from ase import units

from ace.calculator import ACECalculator
from ace.evaluator import Evaluator, Structure
from conftest import bulk_structure, clone, random_potential, shift_densities_positive

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ase < 3.29
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms, temperature_K, rng=None):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

CUNI = ("Cu", "Ni")
DRIFT_PER_ATOM = 1e-4  # eV/atom
FORCE_WEIGHT = 0.3  # per force component, relative to the energy per atom
RIDGE = 1e-4  # on design columns scaled to a largest entry of 1


def training_set(rng, n_structures=16):
    """Rattled (0.03-0.12 Å) and strained (±2 %) 32-atom Cu-Ni cells labelled with EMT."""
    structures = []
    for k in range(n_structures):
        atoms = bulk_structure(CUNI, seed=int(rng.integers(2**31)), repeat=(2, 2, 2),
                               rattle=0.03 + 0.09 * k / n_structures)
        strain = np.eye(3) + 0.02 * rng.uniform(-1, 1, (3, 3))
        atoms.set_cell(atoms.cell.array @ (strain + strain.T) / 2, scale_atoms=True)
        atoms.calc = EMT()
        structures.append((atoms, atoms.get_potential_energy(), atoms.get_forces()))
    return structures


def fitted_potential(radbase, npot, seed):
    """Random crad and second density; linear density and E0 fitted to EMT by ridge."""
    rng = np.random.default_rng(seed)
    pot = random_potential(CUNI, radbase, npot, ndensity=2, orders=([6, 3, 2], [0, 2, 1]),
                           seed=seed, rcut=4.5, dcut=0.3, crad_noise=0.2, scale=0.05)
    pot.e0[:] = 0.0
    # the sqrt-like second density is kept well above 0 (where F is not smooth): rank-1 terms
    # only, dominated by sum_j g_0(r_ij) > 0, then shifted up on the training structures
    rank1 = np.array([f.rank == 1 for f in pot.functions])
    pot.coefficients[~rank1, 1] = 0.0
    pot.coefficients[[f.rank == 1 and f.ns[0] == 0 for f in pot.functions], 1] = 1.0
    training = training_set(rng)
    pot = shift_densities_positive(pot, [atoms for atoms, _, _ in training], margin=2.0)
    fixed = clone(pot, np.column_stack([np.zeros(pot.n_functions), pot.coefficients[:, 1]]))
    fixed_calc = ACECalculator(fixed, num_threads=1)
    evaluator = Evaluator(pot)
    design, target = [], []
    for atoms, energy, forces in training:
        n = len(atoms)
        rows = evaluator.design_rows(Structure.from_atoms(pot, atoms), num_threads=1)
        counts = [np.sum(atoms.symbols == e) for e in pot.elements]
        work = atoms.copy()
        work.calc = fixed_calc
        design.append(np.concatenate([rows.energy, counts]) / n)
        target.append((energy - work.get_potential_energy()) / n)
        force_rows = rows.forces.reshape(3 * n, -1)
        design.extend(FORCE_WEIGHT * np.hstack([force_rows, np.zeros((3 * n, len(counts)))]))
        target.extend(FORCE_WEIGHT * (forces - work.get_forces()).ravel())
    design, target = np.array(design), np.array(target)
    scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
    ridge = RIDGE * np.eye(design.shape[1])
    solution = np.linalg.lstsq(np.vstack([design / scale, ridge]),
                               np.concatenate([target, np.zeros(design.shape[1])]), rcond=None)[0]
    solution /= scale
    coefficients = pot.coefficients.copy()
    coefficients[:, 0] = solution[:pot.n_functions]
    fitted = clone(pot, coefficients)
    fitted.e0 = solution[pot.n_functions:]
    return fitted


@pytest.mark.parametrize("radbase, npot", [("ChebExpCos", "FinnisSinclairShiftedScaled"),
                                           ("SBessel", "FinnisSinclair"),
                                           ("ChebPow", "FinnisSinclairShiftedScaled")])
def test_nve_conserves_energy(radbase, npot):
    seed = {"ChebExpCos": 1, "SBessel": 2, "ChebPow": 3}[radbase]
    pot = fitted_potential(radbase, npot, seed)
    atoms = bulk_structure(CUNI, seed=seed + 50, repeat=(2, 2, 2), rattle=0.05)
    n = len(atoms)

    # the potential is sane: close to EMT on a fresh structure (not in the training set)
    reference = atoms.copy()
    reference.calc = EMT()
    atoms.calc = ACECalculator(pot, num_threads=1)
    force_error = np.sqrt(np.mean((atoms.get_forces() - reference.get_forces()) ** 2))
    assert force_error < 0.05, f"fit to EMT failed: force RMSE {force_error:.3f} eV/Å"
    assert abs(atoms.get_potential_energy() - reference.get_potential_energy()) / n < 0.01

    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    start = atoms.positions.copy()
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    potential, kinetic = [], []

    def record():
        potential.append(atoms.get_potential_energy())
        kinetic.append(atoms.get_kinetic_energy())

    record()
    dynamics.attach(record, interval=1)
    dynamics.run(200)
    potential, kinetic = np.array(potential), np.array(kinetic)
    total = potential + kinetic

    drift = np.abs(total - total[0]).max() / n
    assert drift <= DRIFT_PER_ATOM, f"total energy drifted by {drift:.2e} eV/atom"
    # the check means something: energy flowed between kinetic and potential, atoms moved,
    # and nothing collapsed or flew apart
    assert np.ptp(potential) / n > 50 * DRIFT_PER_ATOM
    temperature = kinetic / (1.5 * n * units.kB)
    assert 50 < temperature.min() and temperature.max() < 600, temperature
    displacement = np.linalg.norm(atoms.positions - start, axis=1)
    assert 0.02 < displacement.max() < 1.0
    distances = atoms.get_all_distances(mic=True)[np.triu_indices(n, 1)]
    assert distances.min() > 2.0
