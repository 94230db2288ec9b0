"""Energy+forces time per atom-step of ace's evaluator, beside python-ace's (pyace) evaluators.

Workload (issues 2 and 5): bcc Mo, a = 3.16 Å, ``--size``^3 cubic cells (10 -> 2000 atoms),
rattled by 0.05 Å (seeded); a single-species FS potential with 2 densities, SBessel radial
basis, rcut 5 Å, ranks 1-5 (nradmax_by_orders [15, 6, 4, 3, 2], lmax_by_orders
[0, 4, 3, 2, 1]) truncated to ``--n-functions`` functions. The function coefficients are random
(seeded); for density 2 the rank-1 coefficients are positive and that of g_0 is large, so
that rho_2 > 0 under the square-root embedding (checked). When pyace is installed the very
same functions and coefficients are given to it (its function set for this config equals
ours), saved as .yace, and the energies and forces of both codes are compared before timing.

Timed: ``calc.calculate(atoms, ["energy", "forces"], all_changes)`` (neighbour list included)
and, for ace, the same with ``system_changes=["positions"]`` (neighbour list reused within the
calculator's skin, the MD case). Every entry is called once as a warm-up, then all entries are
called round-robin ``--repeats`` times (so that a change of load on the shared machine hits all
alike); the table gives the median and the minimum wall time and the median process CPU time
(all threads, including numpy's OpenBLAS workers), in µs per atom. For ace also: the kernel
alone (``ace._core._evaluator.energy_forces`` on the calculator's pairs), the neighbour list
alone (``ace.neighbours.build_neighbour_list``) and the call with the kernel stubbed out (its
Python overhead), on this cell and on a 64-atom cell.

    PYTHONPATH=. python benchmarks/bench_evaluate.py [--n-functions 600] [--repeats 5] [--size 10]
    PYTHONPATH=. python benchmarks/bench_evaluate.py --profile-run --size 4 --repeats 4  # profilers

See benchmarks/README.md for results and the profile.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
from ase.build import bulk
from ase.calculators.calculator import all_changes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (current_rss_mb, format_table, interleaved_timing,  # noqa: E402
                    machine_description, modules_available, peak_rss_mb, source_version)

from ace.basis import build_basis  # noqa: E402
from ace.calculator import ACECalculator  # noqa: E402
import ace.evaluator as evaluator_module  # noqa: E402
from ace.evaluator import Evaluator, Structure  # noqa: E402
from ace.potential import ACEPotential  # noqa: E402
from ace._core import _evaluator as core  # noqa: E402
from ace.neighbours import build_neighbour_list  # noqa: E402

LATTICE_A = 3.16  # Å, bcc Mo
RATTLE = 0.05  # Å
OVERHEAD_CELL = (4, 4, 2)  # cubic bcc cells: 64 atoms
OVERHEAD_CALLS = 20  # calculator calls per timing sample on the small cell


def potential_config(n_functions):
    """The reference config of issue 5 (pacemaker's potential dict)."""
    return {
        "elements": ["Mo"],
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled",
                               "fs_parameters": [1, 1, 1, 0.5], "ndensity": 2}},
        "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": 5.0,
                          "dcut": 0.01}},
        "functions": {"number_of_functions_per_element": n_functions,
                      "ALL": {"nradmax_by_orders": [15, 6, 4, 3, 2],
                              "lmax_by_orders": [0, 4, 3, 2, 1]}},
    }


def workload(size, seed):
    atoms = bulk("Mo", "bcc", a=LATTICE_A, cubic=True).repeat((size, size, size))
    atoms.rattle(RATTLE, seed=seed)
    return atoms


def random_coefficients(functions, seed):
    """[n_functions, 2] normal(0, 0.1) coefficients; for density 2 the rank-1 ones are positive
    and the one of g_0 (positive inside the cutoff) is 100, which keeps rho_2 > 0."""
    rng = np.random.default_rng(seed)
    coefficients = 0.1 * rng.standard_normal((len(functions), 2))
    rank1 = np.array([f.rank == 1 for f in functions])
    coefficients[rank1, 1] = np.abs(coefficients[rank1, 1])
    first = [k for k, f in enumerate(functions) if f.rank == 1 and f.ns[0] == 0]
    coefficients[first, 1] = 100.0
    return coefficients


def function_key(f):
    return (f.mu0, tuple(f.mus), tuple(f.ns), tuple(f.ls), tuple(f.LS))


def build_ours(cfg, seed):
    basis = build_basis(cfg)
    coefficients = random_coefficients(basis.functions, seed)
    potential = ACEPotential.from_basis(basis, coefficients)
    return potential


def build_pyace(cfg, potential, directory):
    """Write the same potential (same functions, same coefficients) as pyace's .yace file."""
    from pyace import ACEBBasisSet, create_multispecies_basis_config

    bconf = create_multispecies_basis_config(cfg)
    index = {e: i for i, e in enumerate(potential.elements)}
    ours = {function_key(f): row for f, row in zip(potential.functions, potential.coefficients)}
    coefficients = []
    for block in bconf.funcspecs_blocks:
        for spec in block.funcspecs:
            key = (index[spec.elements[0]], tuple(index[e] for e in spec.elements[1:]),
                   tuple(n - 1 for n in spec.ns), tuple(spec.ls), tuple(spec.LS))
            if key not in ours:
                raise RuntimeError(f"pyace function {key} is not in our basis: the bases differ")
            coefficients.extend(ours.pop(key)[:len(spec.coeffs)])
    if ours:
        raise RuntimeError(f"{len(ours)} of our functions are not in pyace's basis")
    bconf.set_func_coeffs(coefficients)
    path = os.path.join(directory, "bench.yace")
    ACEBBasisSet(bconf).to_ACECTildeBasisSet().save_yaml(path)
    return path


def calculator_call(calc, atoms, system_changes=tuple(all_changes)):
    """A callable doing one energy+forces evaluation (``system_changes`` as ASE passes them)."""
    atoms = atoms.copy()
    atoms.calc = calc
    changes = list(system_changes)

    def call():
        calc.calculate(atoms, ["energy", "forces"], changes)

    return call


def ours_parts(potential, atoms, n_threads, skin, calls=1):
    """Callables for the neighbour list alone and the kernel alone, on the pairs the calculator
    uses (cutoff + skin); and the number of pairs."""
    structure = Structure.from_atoms(potential, atoms)
    model = Evaluator(potential).energy_model
    cutoff = potential.cutoff + skin

    def neighbours():
        for _ in range(calls):
            build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, n_threads)

    nl = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, n_threads)
    vectors = np.ascontiguousarray(nl.vectors)

    def kernel():
        for _ in range(calls):
            core.energy_forces(model, structure.species, nl.first, nl.i, nl.j, vectors, n_threads)

    return neighbours, kernel, len(nl)


def calculator_skin(calc):
    """The neighbour-list skin the calculator adds to the cutoff (0 if it has none)."""
    return float(calc.parameters.get("skin", 0.0) or 0.0)


class KernelStub:
    """While active, ``ace.evaluator.energy_forces`` returns results computed once per structure:
    a calculator call then costs everything except the kernel (its Python overhead)."""

    def __init__(self):
        self.real = evaluator_module.energy_forces
        self.cache = {}

    def __call__(self, model, species, first, pair_i, pair_j, vectors, n_threads):
        key = (id(model), len(species), len(pair_j))
        if key not in self.cache:
            self.cache[key] = self.real(model, species, first, pair_i, pair_j, vectors, n_threads)
        return self.cache[key]

    def __enter__(self):
        evaluator_module.energy_forces = self
        return self

    def __exit__(self, *exc):
        evaluator_module.energy_forces = self.real

    def wrap(self, function):
        def run():
            with self:
                function()
        return run


def python_overhead(potential, repeats, seed):
    """Per-call times on a 64-atom cell, 1 thread: the kernel, and the calculator call without it
    (kernel stubbed) with a new and with a reused neighbour list; and the neighbour list alone."""
    atoms = bulk("Mo", "bcc", a=LATTICE_A, cubic=True).repeat(OVERHEAD_CELL)
    atoms.rattle(RATTLE, seed=seed)
    stub = KernelStub()
    calc = ACECalculator(potential, num_threads=1)
    reused_calc = ACECalculator(potential, num_threads=1)
    reused_calc.calculate(atoms.copy(), ["energy", "forces"], all_changes)  # builds the list
    neighbours, kernel, _ = ours_parts(potential, atoms, 1, calculator_skin(calc),
                                       calls=OVERHEAD_CALLS)

    def repeated(function):
        def run():
            for _ in range(OVERHEAD_CALLS):
                function()
        return run

    functions = {
        "call": repeated(calculator_call(calc, atoms)),
        "without kernel": repeated(stub.wrap(calculator_call(calc, atoms))),
        "without kernel, list reused": repeated(
            stub.wrap(calculator_call(reused_calc, atoms, ["positions"]))),
        "neighbour list": neighbours,
        "kernel": kernel,
    }
    timings = interleaved_timing(functions, repeats=repeats)
    return len(atoms), {name: t.median / OVERHEAD_CALLS for name, t in timings.items()}


def compare_results(potential, yace_path, atoms):
    """Energy and force differences between ace and pyace on the workload (a sanity check)."""
    from pyace import PyACECalculator

    ours = ACECalculator(potential, num_threads=1)
    theirs = PyACECalculator(yace_path)
    ours.calculate(atoms.copy(), ["energy", "forces"], all_changes)
    theirs.calculate(atoms.copy(), ["energy", "forces"], all_changes)
    de = abs(ours.results["energy"] - theirs.results["energy"]) / len(atoms)
    df = np.abs(ours.results["forces"] - theirs.results["forces"]).max()
    return ours.results["energy"] / len(atoms), de, df


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-functions", type=int, default=600,
                        help="number_of_functions_per_element (default 600; issue 2 says ~750)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per median (>= 1)")
    parser.add_argument("--size", type=int, default=10,
                        help="cubic bcc cells per axis (default 10: 2000 atoms)")
    parser.add_argument("--threads", type=int, default=2,
                        help="largest thread count for ace (1 and this are timed; default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of rattle and coefficients")
    parser.add_argument("--no-pyace", action="store_true", help="time ace only")
    parser.add_argument("--profile-run", action="store_true",
                        help="only call ace's calculator --repeats times, 1 thread, no timing "
                             "(to run under valgrind --tool=callgrind or perf)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def thread_environment():
    """The thread-count variables that matter here (numpy's OpenBLAS spins a worker thread per
    core after each multi-threaded call, which competes with ace's OpenMP threads)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    return ", ".join(f"{name}={os.environ[name]}" for name in names if name in os.environ) or \
        "no OMP/OPENBLAS variables set"


def pyace_available(disabled):
    return modules_available(disabled, "pyace")


def main(argv=None):
    args = parse_args(argv)
    cfg = potential_config(args.n_functions)
    atoms = workload(args.size, args.seed)
    potential = build_ours(cfg, args.seed)
    n_atoms = len(atoms)

    if args.profile_run:
        calc = ACECalculator(potential, num_threads=1)
        for _ in range(args.repeats):
            calc.calculate(atoms, ["energy", "forces"], all_changes)
        print(f"{args.repeats} calls on {n_atoms} atoms, E = {calc.results['energy']:.10g} eV")
        return None

    have_pyace = pyace_available(args.no_pyace)
    counts = dict(sorted(potential.counts()["Mo"].items()))
    print(f"machine: {machine_description()}")
    print(f"ace: {source_version(core.__file__)} ({os.path.dirname(core.__file__)}); "
          f"threads: {thread_environment()}")
    print(f"workload: {n_atoms} atoms bcc Mo (a = {LATTICE_A} Å, rattle {RATTLE} Å, seed "
          f"{args.seed}); {potential.n_functions} functions, per rank {counts}; "
          f"median of {args.repeats} interleaved repeats after a warm-up")
    results = {"load_average_start": os.getloadavg()[0], "machine": machine_description(),
               "ace_version": source_version(core.__file__),
               "thread_environment": thread_environment(),
               "n_atoms": n_atoms,
               "n_functions": potential.n_functions, "functions_per_rank": counts,
               "repeats": args.repeats}

    densities = Evaluator(potential).compute(Structure.from_atoms(potential, atoms), 1).densities
    results["min_density"] = densities.min(axis=0).tolist()
    print(f"densities: min rho_p = {', '.join(f'{v:.3g}' for v in densities.min(axis=0))}")

    # ---- everything timed in one interleaved group: same load for every entry
    thread_counts = sorted({1, max(1, args.threads)})
    functions, n_pairs, stub = {}, None, KernelStub()
    with tempfile.TemporaryDirectory() as tmp:
        if have_pyace:
            from pyace import PyACECalculator
            yace = build_pyace(cfg, potential, tmp)
            e_atom, de, df = compare_results(potential, yace, atoms)
            print(f"check: E/atom = {e_atom:.8f} eV; |E_ace - E_pyace|/atom = {de:.1e} eV, "
                  f"max |F_ace - F_pyace| = {df:.1e} eV/Å")
            results.update(energy_difference_per_atom=de, max_force_difference=df)
            functions["pyace recursive"] = calculator_call(
                PyACECalculator(yace, recursive_evaluator=True, recursive=True), atoms)
            functions["pyace product"] = calculator_call(PyACECalculator(yace), atoms)
        for n in thread_counts:
            calc = ACECalculator(potential, num_threads=n)
            functions[f"ace {n}"] = calculator_call(calc, atoms)
            reused = ACECalculator(potential, num_threads=n)
            reused.calculate(atoms.copy(), ["energy", "forces"], all_changes)
            functions[f"ace {n} reused"] = calculator_call(reused, atoms, ["positions"])
            neighbours, kernel, n_pairs = ours_parts(potential, atoms, n, calculator_skin(calc))
            functions[f"nl {n}"] = neighbours
            functions[f"kernel {n}"] = kernel
            functions[f"stub {n}"] = stub.wrap(calculator_call(calc, atoms))
        timings = interleaved_timing(functions, repeats=args.repeats)
    per_atom = {name: t.median / n_atoms * 1e6 for name, t in timings.items()}
    results["us_per_atom"] = per_atom
    results["min_us_per_atom"] = {name: min(t.times) / n_atoms * 1e6
                                  for name, t in timings.items()}
    results["cpu_us_per_atom"] = {name: t.cpu_median / n_atoms * 1e6
                                  for name, t in timings.items()}

    reference = per_atom.get("pyace recursive")
    rows = []
    names = ([("pyace recursive", "pyace recursive", 1), ("pyace product", "pyace product", 1)]
             if have_pyace else [])
    names += [(f"ace {n}", "ace", n) for n in thread_counts]
    names += [(f"ace {n} reused", "ace, list reused", n) for n in thread_counts]
    for key, label, n in names:
        t = timings[key]
        ratio = f"{per_atom[key] / reference:.2f}" if reference else "-"
        speedup = (f"{per_atom[key.replace(f'ace {n}', 'ace 1')] / per_atom[key]:.2f}"
                   if label.startswith("ace") else "-")
        rows.append((label, n, f"{per_atom[key]:.1f}", f"{min(t.times) / n_atoms * 1e6:.1f}",
                     f"{t.cpu_median / n_atoms * 1e6:.1f}", f"{t.spread:.0%}", ratio, speedup))
    print()
    print("energy+forces per atom-step: calculate(atoms, ['energy', 'forces'], all_changes), "
          "neighbour list included\n('list reused': system_changes=['positions'], the MD case)")
    print(format_table(("evaluator", "threads", "µs/atom", "min", "CPU µs/atom", "spread",
                        "/ pyace recursive", "1 thr / n thr"), rows))

    split = []
    for n in thread_counts:
        call, nl, kern = per_atom[f"ace {n}"], per_atom[f"nl {n}"], per_atom[f"kernel {n}"]
        without = per_atom[f"stub {n}"]
        split.append((n, f"{call:.1f}", f"{kern:.1f}", f"{without:.2f}", f"{nl:.2f}",
                      f"{without - nl:.2f}", f"{kern / (kern + without):.0%}"))
    print()
    print(f"ace split, µs/atom ({n_pairs} pairs within cutoff + skin, "
          f"{n_pairs / n_atoms:.1f} per atom); 'without kernel' = the call with the kernel "
          "stubbed")
    print(format_table(("threads", "call", "kernel", "without kernel", "of which neighbour list",
                        "rest (Python)", "kernel / (kernel + without)"), split))

    n_small, small = python_overhead(potential, args.repeats, args.seed)
    kern = small["kernel"]
    print()
    print(f"Python overhead per calculator call, {n_small}-atom cell, 1 thread (median of "
          f"{args.repeats} x {OVERHEAD_CALLS} calls; overhead = call with the kernel stubbed)")
    fresh, reused = small["without kernel"], small["without kernel, list reused"]
    rows = [("new list (all_changes)", f"{small['call'] * 1e6:.0f}", f"{kern * 1e6:.0f}",
             f"{fresh * 1e6:.0f}", f"{small['neighbour list'] * 1e6:.0f}",
             f"{fresh / (fresh + kern):.1%}"),
            ("list reused (positions)", "-", f"{kern * 1e6:.0f}", f"{reused * 1e6:.0f}", "-",
             f"{reused / (reused + kern):.1%}")]
    print(format_table(("calculator call", "call µs", "kernel µs", "overhead µs",
                        "of which neighbour list µs", "overhead / (overhead + kernel)"), rows))
    results["overhead_64_atoms_us"] = {name: t * 1e6 for name, t in small.items()}
    print()
    results["load_average_end"] = os.getloadavg()[0]
    print(f"peak RSS {peak_rss_mb():.0f} MiB (current {current_rss_mb():.0f} MiB; whole process, "
          f"both codes); load average now {results['load_average_end']:.2f}")
    if not have_pyace:
        print("(pyace not installed or --no-pyace: ace only)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
