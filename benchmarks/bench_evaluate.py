"""Energy+forces time per atom-step of ace's evaluator, beside python-ace's (pyace) evaluators.

Workload (issues 2 and 5): bcc Mo, a = 3.16 Å, ``--size``^3 cubic cells (10 -> 2000 atoms),
rattled by 0.05 Å (seeded); a single-species FS potential with 2 densities, SBessel radial
basis, rcut 5 Å, ranks 1-5 (nradmax_by_orders [15, 6, 4, 3, 2], lmax_by_orders
[0, 4, 3, 2, 1]) truncated to ``--n-functions`` functions. The function coefficients are random
(seeded); the rank-1 coefficients of density 2 are made positive so that rho_2 > 0 under the
square-root embedding. When pyace is installed the very same functions and coefficients are
given to it (its function set for this config equals ours), saved as .yace, and the energies
and forces of both codes are compared before timing.

Timed: ``calc.calculate(atoms, ["energy", "forces"], all_changes)`` (neighbour list included),
one warm-up call, median of ``--repeats`` calls, reported in µs per atom. For ace also the
split into neighbour list (``ace.neighbours.build_neighbour_list``) and kernel
(``ace._core._evaluator.energy_forces``), and the Python overhead per calculator call on a
64-atom cell (call minus kernel).

    PYTHONPATH=. python benchmarks/bench_evaluate.py [--n-functions 600] [--repeats 5] [--size 10]
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
                    machine_description, peak_rss_mb, source_version)

from ace.basis import build_basis  # noqa: E402
from ace.calculator import ACECalculator  # noqa: E402
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
    """[n_functions, 2] normal(0, 0.1) coefficients; rank-1 density-2 ones positive."""
    rng = np.random.default_rng(seed)
    coefficients = 0.1 * rng.standard_normal((len(functions), 2))
    rank1 = np.array([f.rank == 1 for f in functions])
    coefficients[rank1, 1] = np.abs(coefficients[rank1, 1])
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
                raise RuntimeError(f"pyace function {key} is not in our basis: the two bases differ")
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


def python_overhead(potential, repeats, seed):
    """Per-call times on a 64-atom cell, 1 thread: calculator (new and reused neighbour list),
    neighbour list, kernel."""
    atoms = bulk("Mo", "bcc", a=LATTICE_A, cubic=True).repeat(OVERHEAD_CELL)
    atoms.rattle(RATTLE, seed=seed)
    calc = ACECalculator(potential, num_threads=1)
    fresh = calculator_call(calc, atoms)
    reused_calc = ACECalculator(potential, num_threads=1)
    reused = calculator_call(reused_calc, atoms, ["positions"])
    reused_calc.calculate(atoms.copy(), ["energy", "forces"], all_changes)  # builds the list
    neighbours, kernel, _ = ours_parts(potential, atoms, 1, calculator_skin(calc),
                                       calls=OVERHEAD_CALLS)

    def repeated(function):
        def run():
            for _ in range(OVERHEAD_CALLS):
                function()
        return run

    timings = interleaved_timing({"call": repeated(fresh), "call, list reused": repeated(reused),
                                  "neighbour list": neighbours, "kernel": kernel},
                                 repeats=repeats)
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


def pyace_available(disabled):
    if disabled:
        return False
    try:
        import pyace  # noqa: F401
    except ImportError:
        return False
    return True


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
    print(f"ace: {source_version(core.__file__)} ({os.path.dirname(core.__file__)})")
    print(f"workload: {n_atoms} atoms bcc Mo (a = {LATTICE_A} Å, rattle {RATTLE} Å, seed "
          f"{args.seed}); {potential.n_functions} functions, per rank {counts}; "
          f"median of {args.repeats} interleaved repeats after a warm-up")
    results = {"machine": machine_description(), "ace_version": source_version(core.__file__),
               "n_atoms": n_atoms,
               "n_functions": potential.n_functions, "functions_per_rank": counts,
               "repeats": args.repeats}

    # ---- everything timed in one interleaved group: same load for every entry
    thread_counts = sorted({1, max(1, args.threads)})
    functions, n_pairs = {}, None
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
        timings = interleaved_timing(functions, repeats=args.repeats)
    per_atom = {name: t.median / n_atoms * 1e6 for name, t in timings.items()}
    results["us_per_atom"] = per_atom
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
        rows.append((label, n, f"{per_atom[key]:.1f}", f"{t.cpu_median / n_atoms * 1e6:.1f}",
                     f"{t.spread:.0%}", ratio, speedup))
    print()
    print("energy+forces per atom-step: calculate(atoms, ['energy', 'forces'], all_changes), "
          "neighbour list included\n('list reused': system_changes=['positions'], the MD case)")
    print(format_table(("evaluator", "threads", "µs/atom", "CPU µs/atom", "spread",
                        "/ pyace recursive", "1 thr / n thr"), rows))

    split = []
    for n in thread_counts:
        call, nl, kern = per_atom[f"ace {n}"], per_atom[f"nl {n}"], per_atom[f"kernel {n}"]
        split.append((n, f"{call:.1f}", f"{nl:.2f}", f"{kern:.1f}", f"{call - nl - kern:.2f}",
                      f"{kern / call:.0%}"))
    print()
    print(f"ace split, µs/atom ({n_pairs} pairs within cutoff + skin, "
          f"{n_pairs / n_atoms:.1f} per atom)")
    print(format_table(("threads", "call", "neighbour list", "kernel", "rest (Python)",
                        "kernel share"), split))

    n_small, small = python_overhead(potential, args.repeats, args.seed)
    call, kern = small["call"], small["kernel"]
    print()
    print(f"Python overhead per calculator call, {n_small}-atom cell, 1 thread "
          f"(median of {args.repeats} x {OVERHEAD_CALLS} calls)")
    rows = [("new list (all_changes)", f"{call * 1e6:.0f}", f"{kern * 1e6:.0f}",
             f"{small['neighbour list'] * 1e6:.0f}", f"{(call - kern) * 1e6:.0f}",
             f"{(call - kern) / call:.1%}"),
            ("list reused (positions)", f"{small['call, list reused'] * 1e6:.0f}",
             f"{kern * 1e6:.0f}", "-", f"{(small['call, list reused'] - kern) * 1e6:.0f}",
             f"{(small['call, list reused'] - kern) / small['call, list reused']:.1%}")]
    print(format_table(("call", "call µs", "kernel µs", "neighbour list µs",
                        "call - kernel µs", "share of call"), rows))
    results["overhead_64_atoms_us"] = {name: t * 1e6 for name, t in small.items()}
    print()
    print(f"peak RSS {peak_rss_mb():.0f} MiB (current {current_rss_mb():.0f} MiB; whole process, "
          f"both codes); load average now {os.getloadavg()[0]:.2f}")
    if not have_pyace:
        print("(pyace not installed or --no-pyace: ace only)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
