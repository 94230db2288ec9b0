"""Cost and memory of ace's energy+forces against the number of atoms (issue 5, target 3).

Workload: the potential of bench_evaluate.py (600 functions, 2 densities, SBessel rcut 5 Å) on
rattled bcc Mo cells of 250 to 16 000 atoms (cubic cells repeated (5, 5, 5) ... (20, 20, 20)).
Each size runs in its own child process, so that its memory figures are its own:

- time: ``calc.calculate(atoms, ["energy", "forces"], all_changes)`` (new neighbour list each
  call) and with ``["positions"]`` (list reused), median of ``--repeats`` interleaved calls
  after a warm-up, µs per atom;
- memory: the peak resident set size during those calls minus the resident size before the
  structure was made (the high-water mark is reset through /proc/self/clear_refs where Linux
  allows it), and the peak of Python/numpy allocations (tracemalloc) during one call, both per
  atom.

    PYTHONPATH=. python benchmarks/bench_scaling.py [--threads 1] [--repeats 5] [--sizes 250,16000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (current_rss_mb, format_table, interleaved_timing,  # noqa: E402
                    machine_description, peak_rss_mb, source_version)

REPEATS = {250: (5, 5, 5), 500: (5, 5, 10), 1000: (5, 10, 10), 2000: (10, 10, 10),
           4000: (10, 10, 20), 8000: (10, 20, 20), 16000: (20, 20, 20)}


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def high_water_mb() -> float:
    """VmHWM of this process in MiB (falls back to ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def run_one(n_atoms, potential_path, threads, repeats, seed):
    """Measure one size in this process; returns a dict (printed as JSON by the child)."""
    from ase.build import bulk
    from ase.calculators.calculator import all_changes

    from ace.calculator import ACECalculator
    from ace.potential import ACEPotential
    from bench_evaluate import LATTICE_A, RATTLE, calculator_call

    potential = ACEPotential.load(potential_path)
    fresh = ACECalculator(potential, num_threads=threads)
    reused = ACECalculator(potential, num_threads=threads)
    # compile the model on a small cell so that its arrays are in the baseline
    small = bulk("Mo", "bcc", a=LATTICE_A, cubic=True).repeat((2, 2, 2))
    small.rattle(RATTLE, seed=seed)
    fresh.calculate(small, ["energy", "forces"], all_changes)
    reused.evaluator._energy_model = fresh.evaluator.energy_model
    baseline = current_rss_mb()
    exact_peak = reset_peak_rss()

    atoms = bulk("Mo", "bcc", a=LATTICE_A, cubic=True).repeat(REPEATS[n_atoms])
    atoms.rattle(RATTLE, seed=seed)
    tracemalloc.start()
    start = time.perf_counter()
    fresh.calculate(atoms.copy(), ["energy", "forces"], all_changes)
    first_call = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    reused.calculate(atoms.copy(), ["energy", "forces"], all_changes)
    timings = interleaved_timing({"new list": calculator_call(fresh, atoms),
                                  "list reused": calculator_call(reused, atoms, ["positions"])},
                                 repeats=repeats, warmup=0)
    pairs = len(fresh._neighbours)
    return {
        "n_atoms": len(atoms), "threads": threads, "pairs_per_atom": pairs / len(atoms),
        "us_per_atom": {k: t.median / len(atoms) * 1e6 for k, t in timings.items()},
        "min_us_per_atom": {k: min(t.times) / len(atoms) * 1e6 for k, t in timings.items()},
        "cpu_us_per_atom": {k: t.cpu_median / len(atoms) * 1e6 for k, t in timings.items()},
        "first_call_us_per_atom": first_call / len(atoms) * 1e6,
        "baseline_rss_mb": baseline, "peak_rss_mb": high_water_mb(),
        "peak_is_exact": exact_peak,
        "rss_kib_per_atom": (high_water_mb() - baseline) * 1024 / len(atoms),
        "traced_kib_per_atom": traced_peak / 1024 / len(atoms),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per median")
    parser.add_argument("--sizes", default=",".join(map(str, REPEATS)),
                        help=f"comma-separated atom counts among {sorted(REPEATS)}")
    parser.add_argument("--n-functions", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: one size
    parser.add_argument("--potential", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.potential, args.threads, args.repeats,
                                 args.seed)))
        return None
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = sorted(set(sizes) - set(REPEATS))
    if unknown:
        raise SystemExit(f"unknown sizes {unknown}; choose among {sorted(REPEATS)}")
    from bench_evaluate import build_ours, potential_config
    import ace._core._evaluator as core

    print(f"machine: {machine_description()}")
    print(f"ace: {source_version(core.__file__)}; {args.threads} thread(s); median of "
          f"{args.repeats} calls per size, each size in its own process")
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "potential.yaml")
        build_ours(potential_config(args.n_functions), args.seed).save(path)
        for n in sizes:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--one", str(n), "--potential", path,
                 "--threads", str(args.threads), "--repeats", str(args.repeats),
                 "--seed", str(args.seed)],
                capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
    reference = next((r for r in results if r["n_atoms"] == 2000), results[0])
    for r in results:
        t = r["us_per_atom"]
        cpu, ref_cpu = r["cpu_us_per_atom"], reference["cpu_us_per_atom"]
        rows.append((r["n_atoms"], f"{r['pairs_per_atom']:.1f}", f"{t['new list']:.1f}",
                     f"{r['min_us_per_atom']['new list']:.1f}", f"{cpu['new list']:.1f}",
                     f"{cpu['new list'] / ref_cpu['new list']:.2f}",
                     f"{t['list reused']:.1f}", f"{cpu['list reused']:.1f}",
                     f"{cpu['list reused'] / ref_cpu['list reused']:.2f}",
                     f"{r['rss_kib_per_atom']:.1f}" + ("" if r["peak_is_exact"] else "*"),
                     f"{r['traced_kib_per_atom']:.1f}"))
    print()
    print("µs/atom: median wall time; CPU: median process CPU time (all threads), the figure "
          "least disturbed by other load; '/ N': CPU time per atom relative to N atoms")
    print(format_table(("atoms", "pairs/atom", "new list", "min", "CPU",
                        f"/ {reference['n_atoms']}", "list reused", "CPU",
                        f"/ {reference['n_atoms']}", "peak RSS KiB/atom", "traced KiB/atom"),
                       rows))
    if not all(r["peak_is_exact"] for r in results):
        print("* /proc/self/clear_refs not writable: peak RSS includes the set-up")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_description(), "threads": args.threads,
                       "ace_version": source_version(core.__file__), "sizes": results}, fh,
                      indent=2)
    return results


if __name__ == "__main__":
    main()
