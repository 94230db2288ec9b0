"""Active learning with EMT as the reference (issue 16): ``ace learn`` against random selection.

A Cu potential (linear, ~100 functions, cutoff 4.5 Å) is grown from two rattled fcc cells
(108 atoms) by ``ace.learn`` with Langevin MD at 300, 800 and 1500 K (200 steps of 2 fs, gamma
every 10 steps, 4 structures labelled per iteration). Random selection: the same number of
labels drawn at random from EMT Langevin MD frames started from the same seeds at the same
temperatures (every 10th step), fitted the same way. Both are scored on an independent EMT
test set: a 1500 K-equilibrated melt, (100) and (111) slabs, vacancy cells and strained bulk,
all rattled. Printed, for each of ``--seeds`` learn loops (the loop's MD seed): test energy and
force RMSE against the number of labelled structures, beside random selection of the same
counts (mean of ``--repeats`` draws), and how many labels the loop needed to reach random
selection's error at the loop's final count.

    PYTHONPATH=. python benchmarks/bench_learn.py [--iterations 8] [--seeds 5] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from ase import units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_table, machine_description, source_version  # noqa: E402

TEMPERATURES = [300.0, 800.0, 1500.0]
BASIS = {"elements": ["Cu"],
         "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                "fs_parameters": [1, 1]}},
         "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [2.0], "rcut": 4.5,
                           "dcut": 0.01}},
         "functions": {"ALL": {"nradmax_by_orders": [8, 4, 3], "lmax_by_orders": [0, 3, 2]}}}
LOSS = {"forces": 1.0, "stress": 0.0, "method": "gcv"}


def labelled(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def seeds():
    out = []
    for k, a in enumerate([3.61, 3.65]):
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(3)
        atoms.rattle(0.05, seed=k)
        out.append(atoms)
    return out


def emt_md(atoms, temperature, steps, every, seed):
    atoms = atoms.copy()
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    dynamics = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.02,
                        fixcm=False, rng=np.random.default_rng(seed + 1))
    frames = []
    for _ in range(steps // every):
        dynamics.run(every)
        frame = atoms.copy()
        frame.calc = None
        frames.append(frame)
    return frames


def test_set():
    rng = np.random.default_rng(123)
    images = []
    melt = bulk("Cu", "fcc", a=3.7, cubic=True).repeat(3)
    images += emt_md(melt, 3000.0, 400, 100, 7)[1:]  # molten after 200 fs at 3000 K
    for slab in (fcc100("Cu", (3, 3, 4), vacuum=6.0, a=3.61),
                 fcc111("Cu", (3, 3, 4), vacuum=6.0, a=3.61)):
        for k in range(2):
            atoms = slab.copy()
            atoms.pbc = True
            atoms.rattle(0.1, seed=int(rng.integers(1000)))
            images.append(atoms)
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
        del atoms[k]
        atoms.rattle(0.1, seed=int(rng.integers(1000)))
        images.append(atoms)
    for strain in (0.95, 1.05):
        atoms = bulk("Cu", "fcc", a=3.61 * strain, cubic=True).repeat(2)
        atoms.rattle(0.1, seed=int(rng.integers(1000)))
        images.append(atoms)
    return [labelled(a) for a in images]


def fit_errors(images, test):
    from ace.basis import build_basis
    from ace.data import Dataset
    from ace.fitting.linear import LossSettings, fit_linear
    from ace.fitting.metrics import evaluate
    from ace.potential import ACEPotential
    fit = fit_linear(ACEPotential.from_basis(build_basis(BASIS)), Dataset.from_atoms(images),
                     LossSettings(**LOSS), num_threads=1)
    row = evaluate(fit.potential, Dataset.from_atoms(test), 1)["overall"]
    return row["energy_rmse"], row["forces_rmse"]


def labels_to_reach(history_labels, errors, target):
    """The first label count whose error is at or below ``target`` (None if never)."""
    for n, error in zip(history_labels, errors):
        if error <= target:
            return int(n)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5, help="learn loops (MD seeds 0..N-1)")
    parser.add_argument("--repeats", type=int, default=5, help="random-selection draws per count")
    args = parser.parse_args()
    from ace.basis import build_basis
    from ace.learn import learn, load_config
    from ace.potential import ACEPotential

    test = test_set()
    start = seeds()
    histories = []
    with tempfile.TemporaryDirectory() as workdir:
        ACEPotential.from_basis(build_basis(BASIS)).save(os.path.join(workdir, "start.yaml"))
        write(os.path.join(workdir, "seeds.xyz"), start)
        write(os.path.join(workdir, "test.xyz"), test)
        for seed in range(args.seeds):
            config = os.path.join(workdir, f"learn-{seed}.yaml")
            with open(config, "w") as fh:
                fh.write(f"potential: start.yaml\nreference: ase.calculators.emt:EMT\n"
                         f"seeds: seeds.xyz\ntest: test.xyz\noutput: out-{seed}\n"
                         f"iterations: {args.iterations}\nselect: 4\ngamma_threshold: 1.5\n"
                         f"seed: {seed}\n"
                         f"md: {{temperatures: {TEMPERATURES}, steps: 200, timestep: 2.0, "
                         f"interval: 10}}\nloss: {LOSS}\n")
            histories.append(learn(load_config(config)))
    pool = [frame for t in TEMPERATURES for k, s in enumerate(start)
            for frame in emt_md(s, t, 200, 10, 1000 * k + int(t))]
    rng = np.random.default_rng(0)
    random_cache = {}

    def random_errors(n):
        """Mean test RMSE (E, F) of fits to the seeds plus n - len(seeds) random pool frames."""
        if n not in random_cache:
            extra = n - len(start)
            errors = []
            for _ in range(args.repeats if extra else 1):
                chosen = rng.choice(len(pool), size=extra, replace=False) if extra else []
                images = [labelled(a) for a in start] + [labelled(pool[i]) for i in chosen]
                errors.append(fit_errors(images, test))
            random_cache[n] = np.mean(errors, axis=0)
        return random_cache[n]

    summary = []
    for seed, history in enumerate(histories):
        labels = np.cumsum([h["labelled"] for h in history])
        rows = []
        for h, n in zip(history, labels):
            random_e, random_f = random_errors(int(n))
            rows.append([h["iteration"], int(n), f"{h['max_gamma'] or 0:.3g}",
                         f"{h['test']['energy_rmse']:.1f}", f"{h['test']['forces_rmse']:.4f}",
                         f"{random_e:.1f}", f"{random_f:.4f}"])
        print(f"\nlearn loop, MD seed {seed}")
        print(format_table(["iteration", "labelled", "max gamma", "learn E meV/atom",
                            "learn F eV/Å", "random E meV/atom", "random F eV/Å"], rows))
        final = int(labels[-1])
        target_e, target_f = random_errors(final)
        reach_e = labels_to_reach(labels, [h["test"]["energy_rmse"] for h in history], target_e)
        reach_f = labels_to_reach(labels, [h["test"]["forces_rmse"] for h in history], target_f)
        summary.append([seed, final, f"{target_e:.1f} / {target_f:.4f}",
                        f"{reach_e} ({100 * reach_e / final:.0f}%)" if reach_e else "never",
                        f"{reach_f} ({100 * reach_f / final:.0f}%)" if reach_f else "never"])
    print(f"\n{machine_description()}; ace {source_version(__file__)}; pool of "
          f"{len(pool)} EMT MD frames for random selection (mean of {args.repeats} draws)")
    print(format_table(["MD seed", "final labels", "random's final E / F",
                        "learn reaches E with", "learn reaches F with"], summary))


if __name__ == "__main__":
    main()
