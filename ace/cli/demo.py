"""The whole job on a fresh machine, no external data: data, fit, errors, MD.

1. Generates a small Cu dataset with ASE's EMT calculator: strained and rattled bulk cells,
   cells with a vacancy, (001) surface slabs and snapshots of a hot MD run.
2. Fits a linear ACE potential to it with `ace.fit` (what `ace fit` runs) and a config
   naming only elements, cutoff, data and output (all other settings are the defaults).
3. Prints the train/test error tables.
4. Runs a short NVE molecular dynamics with the fitted potential and prints the energy drift
   and the potential's errors against EMT along the trajectory.

Files (data, config, potential, metrics) go to --output-dir.
"""
from __future__ import annotations

import os
import time

import numpy as np

LATTICE = 3.61  # Å, Cu fcc
CUTOFF = 5.0  # Å
SIZES = {  # structures per kind, MD steps
    "full": {"bulk": 16, "vacancy": 6, "surface": 4, "md": 14, "md_steps": 400},
    "quick": {"bulk": 6, "vacancy": 2, "surface": 2, "md": 4, "md_steps": 40},
}


def add_arguments(parser):
    parser.add_argument("--output-dir", default="ace-demo",
                        help="directory for the data, config, potential and metrics "
                             "(default: ./ace-demo)")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller dataset and a shorter MD (a smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--num-threads", type=int, default=None, help="OpenMP threads")


def run(args):
    size = SIZES["quick" if args.quick else "full"]
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.perf_counter()
    print(f"1. generating data with EMT in {args.output_dir}/", flush=True)
    config_path = write_data(args.output_dir, size, args.seed)
    print(f"   ({time.perf_counter() - start:.1f} s)")
    print(f"2. fitting: ace fit {config_path}", flush=True)
    potential = fit(config_path, args.num_threads)
    print("3. NVE molecular dynamics with the fitted potential", flush=True)
    md_report(potential, size["md_steps"], args.seed, args.num_threads)
    print(f"\ndemo done in {time.perf_counter() - start:.1f} s; potential in "
          f"{os.path.join(args.output_dir, 'Cu.yaml')}")
    return 0


# ---------------------------------------------------------------------- 1. data

def thermalize(atoms, temperature_K, rng):
    """Maxwell-Boltzmann momenta (ASE >= 3.29 renamed the function)."""
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K, rng=rng)


def _labelled(atoms, calc, config_type):
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = calc
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return atoms


def generate(size, seed):
    """EMT-labelled Cu structures: a list of Atoms with config_type in info."""
    from ase import units
    from ase.build import bulk, fcc100
    from ase.calculators.emt import EMT
    from ase.md.verlet import VelocityVerlet

    rng = np.random.default_rng(seed)
    calc = EMT()
    cell = bulk("Cu", "fcc", a=LATTICE, cubic=True) * (2, 2, 2)
    images = []
    for _ in range(size["bulk"]):
        atoms = cell.copy()
        strain = rng.normal(0.0, 0.025, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.rattle(rng.uniform(0.02, 0.15), seed=int(rng.integers(1 << 30)))
        images.append(_labelled(atoms, calc, "bulk"))
    for _ in range(size["vacancy"]):
        atoms = cell.copy()
        del atoms[int(rng.integers(len(atoms)))]
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        images.append(_labelled(atoms, calc, "vacancy"))
    for _ in range(size["surface"]):
        atoms = fcc100("Cu", (2, 2, 5), a=LATTICE, vacuum=6.0)
        atoms.info.pop("adsorbate_info", None)  # not storable in extxyz
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        images.append(_labelled(atoms, calc, "surface"))
    atoms = cell.copy()
    atoms.calc = calc
    thermalize(atoms, 1200, rng)
    dynamics = VelocityVerlet(atoms, timestep=2 * units.fs)
    for _ in range(size["md"]):
        dynamics.run(10)
        images.append(_labelled(atoms.copy(), calc, "md"))
    return images


def write_data(directory, size, seed):
    """Write train.xyz / test.xyz (every 5th structure of each kind is a test one) and the
    minimal fit config; return the config path."""
    import ase.io
    import yaml

    images = generate(size, seed)
    kinds = [a.info["config_type"] for a in images]
    position = {k: 0 for k in set(kinds)}
    train, test = [], []
    for atoms, kind in zip(images, kinds):
        (test if position[kind] % 5 == 4 else train).append(atoms)
        position[kind] += 1
    if not test:
        test.append(train.pop())
    ase.io.write(os.path.join(directory, "train.xyz"), train, format="extxyz")
    ase.io.write(os.path.join(directory, "test.xyz"), test, format="extxyz")
    config = {"elements": ["Cu"], "cutoff": CUTOFF,
              "data": {"train": "train.xyz", "test": "test.xyz"}, "output": "Cu.yaml"}
    path = os.path.join(directory, "fit.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    print(f"   {len(train)} train and {len(test)} test structures "
          f"({sum(len(a) for a in images)} atoms; config types: "
          f"{', '.join(sorted(position))})")
    return path


# ---------------------------------------------------------------------- 2. fit

def fit(config_path, num_threads):
    """``ace.fit`` of the config, printing its messages and error tables as ``ace fit``."""
    import ace
    from ace.cli import say
    from ace.cli.fit import print_tables

    result = ace.fit(config_path, num_threads=num_threads, log=say)
    print_tables(result.tables)
    return result.potential


# ---------------------------------------------------------------------- 3. MD

def md_report(potential, steps, seed, num_threads, timestep_fs=2.0, temperature_K=600):
    """NVE run of a 108-atom cell: total-energy drift and errors against EMT along the way."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    from ace.calculator import ACECalculator

    atoms = bulk("Cu", "fcc", a=LATTICE, cubic=True) * (3, 3, 3)
    atoms.calc = ACECalculator(potential, num_threads=num_threads)
    # from the perfect lattice (potential energy at its minimum) equipartition moves half the
    # kinetic energy into potential energy: velocities drawn at twice the temperature settle
    # at about the temperature reported
    thermalize(atoms, 2 * temperature_K, np.random.default_rng(seed))
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    times, totals, samples, temperatures = [], [], [], []
    emt = EMT()

    every = max(1, steps // 20)

    def record():
        times.append(dynamics.get_time() / (1000 * units.fs))
        totals.append(atoms.get_total_energy() / len(atoms))
        temperatures.append(atoms.get_temperature())
        if (len(times) - 1) % every == 0:
            probe = atoms.copy()
            probe.calc = emt
            samples.append((atoms.get_potential_energy() - probe.get_potential_energy(),
                            atoms.get_forces() - probe.get_forces()))

    dynamics.attach(record, interval=1)
    start = time.perf_counter()
    dynamics.run(steps)
    seconds = time.perf_counter() - start
    times, totals = np.array(times), np.array(totals)
    slope = np.polyfit(times, totals, 1)[0] if len(times) > 2 else 0.0
    energy_errors = np.array([e for e, _ in samples])
    force_errors = np.concatenate([f.ravel() for _, f in samples])
    settled = np.mean(temperatures[len(temperatures) // 2:])
    print(f"   {len(atoms)} atoms, {steps} steps of {timestep_fs:g} fs "
          f"({times[-1]:.2f} ps) in {seconds:.1f} s; velocities drawn at {2 * temperature_K} K "
          f"(from the perfect lattice equipartition halves the kinetic temperature): mean "
          f"temperature over the second half {settled:.0f} K (aim {temperature_K} K)")
    print(f"   total energy drift {1000 * slope:+.3f} meV/atom/ps; largest excursion "
          f"{1000 * np.abs(totals - totals[0]).max():.3f} meV/atom")
    per_atom = 1000 * energy_errors / len(atoms)
    print(f"   against EMT along the trajectory: energy offset {per_atom.mean():+.2f} meV/atom "
          f"(spread {per_atom.std():.2f}), "
          f"force RMSE {np.sqrt(np.mean(force_errors ** 2)):.4f} eV/Å")
    return {"drift_meV_per_atom_ps": 1000 * slope, "seconds": seconds,
            "temperature_K": float(settled)}
