"""Physical properties of a potential, each from a properly relaxed structure.

Every routine takes an ASE calculator (``ACECalculator``, or any other, e.g. EMT in the tests)
and returns a plain dict of numbers and lists (JSON-ready). Units: energies eV, lengths Å,
elastic constants and moduli GPa, surface energies J/m², phonon frequencies THz (imaginary
modes as negative numbers), energy drift meV/atom/ps, temperatures K.

The work is done by ASE: cell relaxations by ``FrechetCellFilter`` + BFGS, the equation of
state by ``ase.eos.EquationOfState`` (Birch-Murnaghan), slabs by ``ase.build.surface``,
phonons by ``ase.phonons.Phonons``, MD by ``VelocityVerlet`` and ``Langevin``.
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings

import numpy as np
from ase import Atoms, units
from ase.build import bulk, surface
from ase.data import atomic_numbers, reference_states
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

STRUCTURES = ("bcc", "fcc", "diamond", "hcp")
CUBIC = ("bcc", "fcc", "diamond")
EV_PER_A2_TO_J_PER_M2 = units._e * 1e20  # 1 eV/Å² in J/m²
THZ_PER_EV = 1.0 / (units._hplanck / units._e * 1e12)  # E = h f
FMAX = 1e-4  # eV/Å: relaxations of small cells (elastic constants need tight forces)
FMAX_LARGE = 2e-3  # eV/Å: relaxations of slabs and at fixed volume
FMAX_SUPERCELL = 5e-3  # eV/Å: the vacancy supercell (its energy converges long before)
MAX_STEPS = 1000


def _quiet_optimizer(atoms, fmax, steps=MAX_STEPS):
    """BFGS without log output; True when it converged."""
    optimizer = BFGS(atoms, logfile=None)
    return bool(optimizer.run(fmax=fmax, steps=steps))


def _with(atoms, calculator):
    atoms = atoms.copy()
    atoms.calc = calculator
    return atoms


# ----------------------------------------------------------------------------- crystals

def prototype(element, structure, lattice_constant=None, c_over_a=None):
    """The conventional cell of ``element`` in ``structure`` (cubic cell for cubic lattices).

    Without ``lattice_constant``, ASE's reference state of the element is used when its
    lattice matches, else a guess from the covalent radius."""
    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r} (choose from {', '.join(STRUCTURES)}, "
                         "or give a structure file)")
    a = lattice_constant or _guess_lattice_constant(element, structure)
    if structure == "hcp":
        c = a * (c_over_a or _reference_c_over_a(element))
        return bulk(element, "hcp", a=a, c=c, orthorhombic=True)
    return bulk(element, structure, a=a, cubic=True)


def _guess_lattice_constant(element, structure):
    state = reference_states[atomic_numbers[element]] or {}
    if state.get("symmetry") == structure and "a" in state:
        return float(state["a"])
    from ase.data import covalent_radii
    d = 2.0 * covalent_radii[atomic_numbers[element]]  # nearest-neighbour distance
    return {"bcc": 2 * d / math.sqrt(3), "fcc": d * math.sqrt(2),
            "diamond": 4 * d / math.sqrt(3), "hcp": d}[structure]


def _reference_c_over_a(element):
    state = reference_states[atomic_numbers[element]] or {}
    return float(state.get("c/a", math.sqrt(8.0 / 3.0)))


def relax_crystal(atoms, calculator, fmax=FMAX):
    """Cell and internal coordinates relaxed (FrechetCellFilter + BFGS); a new Atoms."""
    atoms = _with(atoms, calculator)
    converged = _quiet_optimizer(FrechetCellFilter(atoms), fmax)
    if not converged:
        warnings.warn(f"cell relaxation of {atoms.get_chemical_formula()} did not converge "
                      f"to {fmax} eV/Å in {MAX_STEPS} steps", stacklevel=2)
    return atoms


def lattice_constants(atoms, structure):
    """{"a": Å} for cubic cells ({"a", "c"} for hcp) of a relaxed conventional cell."""
    lengths = atoms.cell.lengths()
    if structure == "hcp":  # orthorhombic cell: a, sqrt(3) a, c
        return {"a": float(lengths[0]), "c": float(lengths[2])}
    if structure in CUBIC:
        return {"a": float(np.mean(lengths))}
    return {"a": float(lengths[0]), "b": float(lengths[1]), "c": float(lengths[2])}


def primitive_cell(relaxed, structure, element):
    """The primitive cell of the relaxed crystal (for phonons)."""
    if structure in CUBIC:
        return bulk(element, structure, a=lattice_constants(relaxed, structure)["a"])
    if structure == "hcp":
        lc = lattice_constants(relaxed, structure)
        return bulk(element, "hcp", a=lc["a"], c=lc["c"])
    return relaxed.copy()


# ----------------------------------------------------------------------------- EOS

def equation_of_state(relaxed, calculator, volume_range=0.08, n_points=11, eos="birchmurnaghan"):
    """E(V) on volumes V0 (1 ± volume_range), each with its shape and internal coordinates
    relaxed at fixed volume; V0, E0 (per atom), B0 (GPa), B0' from ASE's EOS fit."""
    n = len(relaxed)
    v_start = relaxed.get_volume()
    volumes, energies = [], []
    for factor in np.linspace(1 - volume_range, 1 + volume_range, n_points):
        atoms = _with(relaxed, calculator)
        atoms.set_cell(relaxed.cell * factor ** (1 / 3), scale_atoms=True)
        if not _is_stationary(atoms):
            _quiet_optimizer(FrechetCellFilter(atoms, constant_volume=True), FMAX_LARGE)
        volumes.append(atoms.get_volume() / n)
        energies.append(atoms.get_potential_energy() / n)
    fit = EquationOfState(volumes, energies, eos=eos)
    v0, e0, b0 = fit.fit(warn=False)
    b0_prime = float(fit.eos_parameters[2]) if eos in ("birchmurnaghan", "murnaghan",
                                                       "vinet", "birch") else None
    return {"V0": float(v0), "E0": float(e0), "B0": float(b0 / units.GPa), "B0_prime": b0_prime,
            "volumes": [float(v) for v in volumes], "energies": [float(e) for e in energies],
            "relative_volume_range": volume_range, "eos": eos,
            "V0_relaxed_cell": float(v_start / n)}


def _is_stationary(atoms, tolerance=1e-4):
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    deviatoric = stress - np.trace(stress) / 3 * np.eye(3)
    return np.abs(forces).max(initial=0.0) < tolerance and np.abs(deviatoric).max() < 1e-6


# ----------------------------------------------------------------------------- elastic

def elastic_tensor(relaxed, calculator, step, fmax=FMAX):
    """The 6x6 elastic tensor (GPa, Voigt order xx, yy, zz, yz, xz, xy) by central differences
    of the stress under strains ±step (engineering shear), internal coordinates relaxed."""
    tensor = np.zeros((6, 6))
    pairs = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
    for j, (a, b) in enumerate(pairs):
        stresses = []
        for sign in (1.0, -1.0):
            strain = np.zeros((3, 3))
            if a == b:
                strain[a, a] = sign * step
            else:
                strain[a, b] = strain[b, a] = sign * step / 2
            atoms = _with(relaxed, calculator)
            atoms.set_cell(relaxed.cell.array @ (np.eye(3) + strain), scale_atoms=True)
            if len(atoms) > 1:
                _quiet_optimizer(atoms, fmax)
            stresses.append(atoms.get_stress(voigt=True))
        tensor[:, j] = (stresses[0] - stresses[1]) / (2 * step) / units.GPa
    return 0.5 * (tensor + tensor.T)


def cubic_constants(tensor):
    """C11, C12, C44 averaged over the symmetry-equivalent entries of a cubic tensor."""
    t = np.asarray(tensor)
    return {"C11": float(np.mean(np.diag(t)[:3])),
            "C12": float(np.mean([t[0, 1], t[0, 2], t[1, 2]])),
            "C44": float(np.mean(np.diag(t)[3:]))}


def elastic_constants(relaxed, calculator, structure, steps=(0.0025, 0.005, 0.01),
                      report_step=0.005, tolerance=0.02):
    """Elastic constants by stress-strain with internal relaxation, at several strain steps.

    Reports the tensor at ``report_step``, and as a convergence check the largest relative
    change of the independent constants between the steps (converged when below
    ``tolerance``). Cubic lattices also give C11, C12, C44 and B = (C11 + 2 C12) / 3."""
    if report_step not in steps:
        steps = tuple(sorted(set(steps) | {report_step}))
    tensors = {float(s): elastic_tensor(relaxed, calculator, s) for s in steps}
    chosen = tensors[float(report_step)]
    result = {"tensor": chosen.round(6).tolist(), "unit": "GPa", "step": float(report_step),
              "steps": [float(s) for s in steps]}
    if structure in CUBIC:
        per_step = {s: cubic_constants(t) for s, t in tensors.items()}
        result.update(per_step[float(report_step)])
        result["bulk_modulus"] = (result["C11"] + 2 * result["C12"]) / 3
        result["by_step"] = {f"{s:g}": v for s, v in per_step.items()}
        scale = max(abs(result["C11"]), 1e-12)
        spread = max(abs(v[k] - result[k]) for v in per_step.values()
                     for k in ("C11", "C12", "C44")) / scale
    else:
        scale = max(np.abs(chosen).max(), 1e-12)
        spread = max(np.abs(t - chosen).max() for t in tensors.values()) / scale
        result["by_step"] = {f"{s:g}": t.round(6).tolist() for s, t in tensors.items()}
    result["step_convergence"] = float(spread)
    result["converged"] = bool(spread < tolerance)
    return result


# ----------------------------------------------------------------------------- defects

def supercell_repeat(atoms, min_atoms=100, min_width=None):
    """The smallest isotropic repeat with at least ``min_atoms`` atoms (and every
    perpendicular width at least ``min_width`` Å)."""
    n = 1
    while True:
        enough = len(atoms) * n ** 3 >= min_atoms
        widths = atoms.cell.volume / np.linalg.norm(
            np.cross(atoms.cell[[1, 2, 0]], atoms.cell[[2, 0, 1]]), axis=1) * n
        if enough and (min_width is None or widths.min() >= min_width):
            return n
        n += 1


def vacancy_formation_energy(relaxed, calculator, min_width=10.0, min_atoms=50, seed=0):
    """Relaxed vacancy formation energy at constant volume (the relaxed bulk cell):
    E_f = E(N-1) - (N-1)/N E(N), in the smallest cubic supercell at least ``min_width`` Å wide
    (twice a typical cutoff) with ``min_atoms`` atoms; all atoms rattled by 0.02 Å first so
    that a symmetry-breaking relaxation can happen."""
    n = supercell_repeat(relaxed, min_atoms, min_width)
    perfect = _with(relaxed.repeat(n), calculator)
    e_bulk = perfect.get_potential_energy()
    n_atoms = len(perfect)
    defect = perfect.copy()
    del defect[0]
    rng = np.random.default_rng(seed)
    defect.positions += 0.02 * rng.standard_normal(defect.positions.shape)
    defect.calc = calculator
    converged = _quiet_optimizer(defect, FMAX_SUPERCELL)
    e_defect = defect.get_potential_energy()
    return {"value": float(e_defect - (n_atoms - 1) / n_atoms * e_bulk), "unit": "eV",
            "supercell": [n, n, n], "n_atoms": n_atoms, "converged": converged,
            "relaxation": "positions, at the relaxed bulk cell (constant volume)"}


def surface_energy(relaxed, calculator, miller, min_thickness=12.0, vacuum=8.0):
    """Relaxed (unreconstructed) surface energy in J/m² of a slab cut by ``ase.build.surface``
    from the conventional cell, at least ``min_thickness`` Å thick:
    gamma = (E_slab - N e_bulk) / (2 A).

    The slab is cut below each atomic plane of a repeat in turn (e.g. through the single or the
    triple bonds of diamond (111)); the cut with the lowest unrelaxed energy is relaxed."""
    e_bulk = _with(relaxed, calculator).get_potential_energy() / len(relaxed)
    one = surface(relaxed, miller, 1, periodic=True)  # one periodic repeat along the normal
    per_layer = one.cell.volume / np.linalg.norm(np.cross(one.cell[0], one.cell[1]))
    layers = max(2, math.ceil(min_thickness / per_layer))
    # one repeat more than needed, then every cut that keeps ``layers`` repeats
    thick = surface(relaxed, miller, layers + 1, periodic=True)
    in_plane = thick.cell.array[:2]
    normal = np.cross(in_plane[0], in_plane[1])
    area = np.linalg.norm(normal)
    normal /= area
    height = thick.positions @ normal
    height -= height.min()
    planes = np.unique(np.round(height[height < per_layer - 1e-6], 4))
    best = None
    for start in planes:
        keep = (height >= start - 1e-4) & (height < start + layers * per_layer - 1e-4)
        slab = thick[keep]
        slab.set_cell([in_plane[0], in_plane[1], normal * (layers * per_layer)], scale_atoms=False)
        slab.center(vacuum=vacuum, axis=2)
        slab.pbc = (True, True, True)  # the vacuum separates the images
        slab.calc = calculator
        energy = slab.get_potential_energy()
        if best is None or energy < best[0]:
            best = (energy, slab)
    e_unrelaxed, slab = best
    converged = _quiet_optimizer(slab, FMAX_LARGE)
    e_slab = slab.get_potential_energy()
    gamma = (e_slab - len(slab) * e_bulk) / (2 * area) * EV_PER_A2_TO_J_PER_M2
    gamma0 = (e_unrelaxed - len(slab) * e_bulk) / (2 * area) * EV_PER_A2_TO_J_PER_M2
    return {"value": float(gamma), "unit": "J/m^2", "unrelaxed": float(gamma0),
            "miller": list(miller), "n_atoms": len(slab), "layers": layers,
            "terminations_tried": len(planes),
            "thickness": float(layers * per_layer), "converged": converged}


# ----------------------------------------------------------------------------- phonons

def phonon_dispersion(primitive, calculator, cutoff, npoints=120, delta=0.01,
                      imaginary_tolerance=0.1, max_atoms=300):
    """Phonon dispersion along ASE's standard band path of the primitive cell, from finite
    displacements (``ase.phonons.Phonons``) in a supercell at least twice the cutoff wide
    (capped at ``max_atoms``). Frequencies in THz; imaginary ones negative; modes below
    -imaginary_tolerance THz are flagged."""
    from ase.phonons import Phonons

    n = supercell_repeat(primitive, 1, 2 * cutoff)
    while len(primitive) * n ** 3 > max_atoms and n > 1:
        n -= 1
    path = primitive.cell.bandpath(npoints=npoints)
    with tempfile.TemporaryDirectory(prefix="ace-phonons-") as tmp:
        phonons = Phonons(primitive, calculator, supercell=(n, n, n), delta=delta,
                          name=os.path.join(tmp, "phonon"))
        phonons.run()
        phonons.read(acoustic=True)
        phonons.clean()
        with _silenced_stdout():
            structure = phonons.get_band_structure(path)
    frequencies = structure.energies[0] * THZ_PER_EV  # [k, branch]
    x, special_x, labels = path.get_linear_kpoint_axis()
    minimum = float(frequencies.min())
    imaginary = frequencies < -imaginary_tolerance
    return {"min_frequency": minimum, "max_frequency": float(frequencies.max()), "unit": "THz",
            "imaginary_modes": bool(imaginary.any()),
            "imaginary_kpoints": int(imaginary.any(axis=1).sum()),
            "supercell": [n, n, n], "path": path.path, "distances": x.tolist(),
            "special_distances": special_x.tolist(), "labels": list(labels),
            "frequencies": frequencies.round(5).tolist()}


class _silenced_stdout:
    """ASE's phonons print a warning per q-point with an imaginary mode; the report has them."""

    def __enter__(self):
        import contextlib
        import io
        self._context = contextlib.redirect_stdout(io.StringIO())
        return self._context.__enter__()

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


# ----------------------------------------------------------------------------- dimer

def dimer_curve(element, calculator, cutoff, shortest_data_distance=None, r_min=0.5, dr=0.025):
    """E(r) - E(separated) of an isolated dimer from r_min to beyond the cutoff.

    Checks that below the shortest distance of the data (``shortest_data_distance``; without
    it, the shortest distance of the curve's minimum) the curve is repulsive (above the
    separated atoms' energy) and monotonic (energy falls as r grows)."""
    distances = np.arange(r_min, cutoff + 0.5 + dr / 2, dr)
    far = Atoms([element, element], positions=[[0, 0, 0], [0, 0, cutoff + 2.0]])
    far.calc = calculator
    e_far = far.get_potential_energy()
    energies = []
    atoms = Atoms([element, element], positions=[[0, 0, 0], [0, 0, r_min]])
    atoms.calc = calculator
    for r in distances:
        atoms.positions = [[0, 0, 0], [0, 0, r]]
        energies.append(atoms.get_potential_energy() - e_far)
    energies = np.array(energies)
    minimum = int(np.argmin(energies))
    limit = shortest_data_distance if shortest_data_distance else float(distances[minimum])
    below = distances < limit
    falling = np.diff(energies[below]) < 0
    monotonic = bool(falling.all())
    repulsive = bool((energies[below] > 0).all()) if below.any() else True
    first_bad = None
    if not monotonic:
        first_bad = float(distances[below][:-1][~falling][0])
    return {"distances": distances.round(4).tolist(), "energies": energies.tolist(),
            "unit": "eV", "check_below": float(limit),
            "check_below_source": "shortest distance in the data" if shortest_data_distance
            else "the curve's minimum",
            "repulsive": repulsive, "monotonic": monotonic, "first_non_monotonic": first_bad,
            "minimum_distance": float(distances[minimum]),
            "minimum_energy": float(energies[minimum]),
            "energy_at_r_min": float(energies[0])}


# ----------------------------------------------------------------------------- MD

def _thermalize(atoms, temperature, seed):
    from ase.md import velocitydistribution as vd
    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):  # ase >= 3.29
        vd.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms)


def nve_drift(relaxed, calculator, temperature=300.0, steps=500, timestep=1.0, min_atoms=60,
              seed=0, record_every=5, min_width=10.0):
    """Velocity-Verlet NVE from a Maxwell-Boltzmann start at ``temperature`` (K): the drift of
    the total energy (slope of a linear fit, meV/atom/ps) and its largest excursion."""
    from ase.md.verlet import VelocityVerlet

    n = supercell_repeat(relaxed, min_atoms, min_width)
    atoms = _with(relaxed.repeat(n), calculator)
    _thermalize(atoms, 2 * temperature, seed)  # equipartition halves it
    dynamics = VelocityVerlet(atoms, timestep=timestep * units.fs)
    times, totals, temps = [], [], []

    def record():
        times.append(dynamics.get_number_of_steps() * timestep / 1000.0)  # ps
        totals.append(atoms.get_total_energy() / len(atoms))
        temps.append(atoms.get_temperature())

    dynamics.attach(record, interval=record_every)
    dynamics.run(steps)
    times, totals = np.array(times), np.array(totals)
    slope = np.polyfit(times, totals, 1)[0] if len(times) > 1 else 0.0
    return {"value": float(slope * 1000.0), "unit": "meV/atom/ps",
            "max_deviation": float(np.abs(totals - totals[0]).max() * 1000.0),
            "max_deviation_unit": "meV/atom", "n_atoms": len(atoms), "steps": steps,
            "timestep_fs": timestep, "start_temperature": 2 * temperature,
            "mean_temperature": float(np.mean(temps)),
            "times": times.round(5).tolist(), "total_energy": (totals - totals[0]).tolist(),
            "temperatures": [float(t) for t in temps]}


def nvt_stability(relaxed, calculator, temperature, shortest_allowed, steps=400, timestep=1.0,
                  min_atoms=60, seed=0, friction=0.02, check_every=10, min_width=10.0):
    """Langevin NVT at ``temperature`` (K): unstable when two atoms come closer than
    ``shortest_allowed`` Å, the temperature exceeds three times the target, or the
    calculator fails (e.g. atoms closer than the potential allows)."""
    from ase.md.langevin import Langevin
    from ase.neighborlist import neighbor_list

    n = supercell_repeat(relaxed, min_atoms, min_width)
    atoms = _with(relaxed.repeat(n), calculator)
    _thermalize(atoms, temperature, seed)
    dynamics = Langevin(atoms, timestep * units.fs, temperature_K=temperature,
                        friction=friction / units.fs, fixcm=False,
                        rng=np.random.default_rng(seed + 1))
    times, temps, shortest = [], [], []
    failure = None

    class Unstable(Exception):
        pass

    def check():
        d = neighbor_list("d", atoms, max(shortest_allowed * 1.5, 1.0))
        times.append(dynamics.get_number_of_steps() * timestep / 1000.0)
        temps.append(float(atoms.get_temperature()))
        shortest.append(float(d.min()) if len(d) else float("inf"))
        if shortest[-1] < shortest_allowed:
            raise Unstable(f"atoms {shortest[-1]:.3f} Å apart (below {shortest_allowed:.3f} Å)")
        if temps[-1] > 3 * temperature:
            raise Unstable(f"temperature {temps[-1]:.0f} K, over 3x the target")

    dynamics.attach(check, interval=check_every)
    try:
        dynamics.run(steps)
    except Unstable as exc:
        failure = str(exc)
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        failure = f"the calculator failed: {exc}"
    finite = [s for s in shortest if math.isfinite(s)]
    return {"temperature": float(temperature), "stable": failure is None, "failure": failure,
            "steps_done": int(dynamics.get_number_of_steps()), "steps": steps,
            "timestep_fs": timestep, "n_atoms": len(atoms),
            "shortest_distance": float(min(finite)) if finite else None,
            "shortest_allowed": float(shortest_allowed),
            "max_temperature": float(max(temps)) if temps else None,
            "mean_temperature_second_half": float(np.mean(temps[len(temps) // 2:])) if temps
            else None,
            "times": [round(t, 5) for t in times], "temperatures": temps,
            "shortest_distances": shortest}
