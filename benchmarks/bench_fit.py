"""Wall time and peak memory of the linear fit, beside python-ace's ``LinearACEFit``.

Cases (each fitter runs in its own subprocess, so its peak resident memory is its own: the
parent reads the child's ``ru_maxrss`` from ``os.wait4``):

* ``si``: the mlearn Si training set (214 structures, 13 233 atoms) with ``--n-functions``
  (default 1000) functions of ace's default basis pool (SBessel, rcut 5 Å; nradmax_by_orders
  [16, 8, 6, 4, 3], lmax_by_orders [0, 6, 4, 3, 2], lowest power order first). ace is timed
  with fixed weights (one pass over the data, one solve: the same work as pyace) and with its
  default 5-fold cross-validation of the force weight and ridge. pyace (when installed) gets
  the same basis from ``create_multispecies_basis_config`` and is fitted by
  ``LinearACEDataset`` + ``LinearACEFit`` (its design matrix in shared memory, filled by
  ``--threads`` worker processes, then scikit-learn's ``Ridge``).
* ``mo``: the Mo training set with ``--mo-functions`` (default 2500) functions, default
  settings (5-fold cross-validation), the target being < 2 min.
* ``scaling``: ace with fixed weights on 25/50/100% of the Si structures (every 4th/2nd/all),
  to show that the cost is linear in the number of atoms.

No core repulsion in any case (it costs one extra energy evaluation per structure, and pyace's
linear fit has none). "wall" is the subprocess's wall time (interpreter start, imports, reading
the data, building the basis, the fit) minus the time of the training-error check that follows
the fit; "fit" is the design rows plus the solve(s) alone. Training errors are printed as a
sanity check, not as a measure of quality (see potentials/README.md for that; pyace's linear
model has no E0 column and an unscaled ridge, so its energy error is larger).

    PYTHONPATH=. python benchmarks/bench_fit.py                  # all cases, 3 repeats
    PYTHONPATH=. python benchmarks/bench_fit.py --cases si --repeats 5 --threads 2
    PYTHONPATH=. python benchmarks/bench_fit.py --no-pyace --json bench_fit.json

Data: ``--data`` (default: ``../shared/data/mlearn`` beside the repository root, i.e. the
directory that holds ``Mo/train.xyz`` and ``Si/train.xyz``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common import (format_table, machine_description, modules_available,  # noqa: E402
                    source_version)

DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "mlearn")
CUTOFF = 5.0
FUNCTIONS = {"nradmax_by_orders": [16, 8, 6, 4, 3], "lmax_by_orders": [0, 6, 4, 3, 2]}
FIXED = {"forces": 0.01, "stress": 0.0, "l2": 1e-6}  # fixed-weight ace runs: no selection


def basis_config(element, n_functions):
    return {"elements": [element],
            "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                   "fs_parameters": [1, 1]}},
            "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": CUTOFF,
                              "dcut": 0.01}},
            "functions": {"number_of_functions_per_element": n_functions, "ALL": FUNCTIONS}}


# ---------------------------------------------------------------------- workers (subprocess)

def subset_every(dataset, fraction):
    """Every k-th structure (k = 1/fraction): a subset with the same mix of config_types."""
    import numpy as np
    step = int(round(1 / fraction))
    return dataset if step == 1 else dataset.subset(np.arange(0, len(dataset), step))


def worker_ace(args):
    from ace.basis import build_basis
    from ace.data import read_dataset
    from ace.fitting.linear import LossSettings, fit_linear
    from ace.fitting.metrics import evaluate
    from ace.potential import ACEPotential

    start = time.perf_counter()
    train = subset_every(read_dataset(args.train, warn_duplicates=False), args.fraction)
    potential = ACEPotential.from_basis(build_basis(basis_config(args.element,
                                                                 args.n_functions)))
    prepared = time.perf_counter()
    settings = LossSettings(**FIXED) if args.mode == "fixed" else LossSettings()
    fit = fit_linear(potential, train, settings, num_threads=args.threads)
    fitted = time.perf_counter()
    table = evaluate(fit.potential, train, args.threads)["overall"]
    return {"n_functions": potential.n_functions, "n_atoms": train.total_atoms,
            "n_structures": len(train), "read_and_basis_s": prepared - start,
            "fit_s": fitted - prepared, "errors_s": time.perf_counter() - fitted,
            "timings": fit.report["timings"], "candidates": fit.report.get("candidates", 0),
            "train_energy_rmse": table["energy_rmse"],
            "train_forces_rmse": table["forces_rmse"]}


def worker_pyace(args):
    import numpy as np
    import pandas as pd
    from ase.io import read
    from pyace import create_multispecies_basis_config
    from pyace.linearacefit import LinearACEDataset, LinearACEFit

    start = time.perf_counter()
    images = read(args.train, ":")
    step = int(round(1 / args.fraction))
    images = images[::step]
    energies = np.array([a.get_potential_energy() for a in images])
    n_atoms = np.array([len(a) for a in images])
    # pyace's linear model has no E0 column: subtract the mean energy per atom (a constant)
    e0 = energies.sum() / n_atoms.sum()
    df = pd.DataFrame({"ase_atoms": images, "energy_corrected": energies - n_atoms * e0,
                       "forces": [a.get_forces() for a in images]})
    bconf = create_multispecies_basis_config(basis_config(args.element, args.n_functions))
    n_functions = sum(len(block.funcspecs) for block in bconf.funcspecs_blocks)
    prepared = time.perf_counter()
    dataset = LinearACEDataset(bconf, df)
    dataset.construct_design_matrix(max_workers=args.threads)
    fit = LinearACEFit(train_dataset=dataset)
    fit.fit()
    fitted = time.perf_counter()
    errors = fit.compute_errors()
    return {"n_functions": n_functions, "n_atoms": int(n_atoms.sum()),
            "n_structures": len(images), "read_and_basis_s": prepared - start,
            "fit_s": fitted - prepared, "errors_s": time.perf_counter() - fitted,
            "train_energy_rmse": errors["epa_rmse"] * 1000,
            "train_forces_rmse": errors["f_comp_rmse"]}


def run_worker(args):
    if args.worker == "ace":
        result = worker_ace(args)
    else:
        result = worker_pyace(args)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------- parent

def spawn(worker, train, element, n_functions, threads, mode="fixed", fraction=1.0):
    """Run one fit in a subprocess: (wall s, peak RSS MiB, the worker's report). The report
    gets the child's CPU time (user + system, all threads) and the 1-minute load average
    before and after the run: on a shared machine wall time alone says little."""
    load_before = os.getloadavg()[0]
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--train", train,
               "--element", element, "--n-functions", str(n_functions), "--threads",
               str(threads), "--mode", mode, "--fraction", str(fraction)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, text=True)
    stdout, stderr = _communicate(process)
    _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage (peak RSS)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{worker} fit failed (exit status {process.returncode}):\n"
                           f"{stderr[-3000:]}")
    report = json.loads(lines[-1][len("RESULT "):])
    wall -= report["errors_s"]  # the training-error check is not part of the fit
    # CPU time of the whole child, including the training-error check (not separable)
    report["cpu_s"] = usage.ru_utime + usage.ru_stime
    report["load"] = [load_before, os.getloadavg()[0]]
    return wall, usage.ru_maxrss / 1024.0, report  # ru_maxrss is in KiB on Linux


def _communicate(process):
    """Read the child's output without reaping it, so that os.wait4 gets its rusage."""
    import threading
    chunks = {"out": [], "err": []}

    def pump(stream, key):
        chunks[key].append(stream.read())

    threads = [threading.Thread(target=pump, args=(process.stdout, "out")),
               threading.Thread(target=pump, args=(process.stderr, "err"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return "".join(chunks["out"]), "".join(chunks["err"])


def measure(label, repeats, **kwargs):
    runs = [spawn(**kwargs) for _ in range(repeats)]
    walls = [r[0] for r in runs]
    fits = [r[2]["fit_s"] for r in runs]
    cpus = [r[2]["cpu_s"] for r in runs]
    # the last run's report for the sizes and errors; its times are replaced by the medians
    row = {**runs[-1][2], "label": label, "runs": len(runs),
           "wall_s": statistics.median(walls), "wall_min_s": min(walls),
           "fit_s": statistics.median(fits), "cpu_s": statistics.median(cpus),
           "peak_rss_mib": max(r[1] for r in runs), "all_wall_s": walls, "all_fit_s": fits,
           "all_cpu_s": cpus, "all_load": [r[2]["load"] for r in runs]}
    loads = [x for r in runs for x in r[2]["load"]]
    if "timings" in runs[-1][2]:
        row["timings"] = {k: statistics.median(r[2]["timings"][k] for r in runs)
                          for k in runs[-1][2]["timings"]}
        row["all_timings"] = [r[2]["timings"] for r in runs]
    print(f"  {label}: wall {row['wall_s']:.1f} s (min {row['wall_min_s']:.1f}), fit "
          f"{row['fit_s']:.1f} s (min {min(fits):.1f}), CPU {row['cpu_s']:.1f} s, peak RSS "
          f"{row['peak_rss_mib']:.0f} MiB, {row['n_functions']} functions, {row['n_atoms']} "
          f"atoms, load average {min(loads):.1f}-{max(loads):.1f}", flush=True)
    if "timings" in row:
        print("    fit parts (median s): " + ", ".join(f"{k} {v:.1f}"
                                                   for k, v in row["timings"].items()),
              flush=True)
    return row


def pyace_available(disabled):
    return modules_available(disabled, "pyace.linearacefit", "sklearn")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["si", "mo", "scaling"],
                        choices=["si", "mo", "scaling"])
    parser.add_argument("--data", default=DEFAULT_DATA, help="directory with Mo/ and Si/")
    parser.add_argument("--n-functions", type=int, default=1000, help="Si case basis size")
    parser.add_argument("--mo-functions", type=int, default=2500, help="Mo case basis size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pyace", action="store_true")
    parser.add_argument("--json", help="write the results here")
    # worker mode (internal)
    parser.add_argument("--worker", choices=["ace", "pyace"], help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--element", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="fixed", choices=["fixed", "cv"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    paths = {el: os.path.join(args.data, el, "train.xyz") for el in ("Si", "Mo")}
    for el, path in paths.items():
        if not os.path.exists(path):
            print(f"bench_fit: error: {path} not found (give --data)", file=sys.stderr)
            return 1
    print(f"machine: {machine_description()}")
    print(f"code: {source_version(__file__)}; threads {args.threads}; repeats {args.repeats}")
    rows = []
    if "si" in args.cases:
        print(f"Si, {args.n_functions} functions:")
        common = dict(train=paths["Si"], element="Si", n_functions=args.n_functions,
                      threads=args.threads)
        rows.append(measure("Si ace, fixed weights", args.repeats, worker="ace", **common))
        rows.append(measure("Si ace, 5-fold CV", args.repeats, worker="ace", mode="cv",
                            **common))
        if pyace_available(args.no_pyace):
            rows.append(measure("Si pyace LinearACEFit", args.repeats, worker="pyace",
                                **common))
    if "mo" in args.cases:
        print(f"Mo, {args.mo_functions} functions:")
        rows.append(measure("Mo ace, 5-fold CV", max(1, args.repeats // 2), worker="ace",
                            mode="cv", train=paths["Mo"], element="Mo",
                            n_functions=args.mo_functions, threads=args.threads))
    if "scaling" in args.cases:
        print(f"Si scaling, {args.n_functions} functions, fixed weights:")
        for fraction in (0.25, 0.5, 1.0):
            rows.append(measure(f"Si ace, {fraction:.0%} of the data", args.repeats,
                                worker="ace", train=paths["Si"], element="Si",
                                n_functions=args.n_functions, threads=args.threads,
                                fraction=fraction))
    print()
    header = ["fit", "functions", "atoms", "wall s (median)", "wall s (min)", "fit s",
              "CPU s", "peak RSS MiB", "µs/atom (fit)", "train E RMSE meV/at",
              "train F RMSE eV/Å"]
    table = [[r["label"], r["n_functions"], r["n_atoms"], f"{r['wall_s']:.1f}",
              f"{r['wall_min_s']:.1f}", f"{r['fit_s']:.1f}", f"{r['cpu_s']:.1f}",
              f"{r['peak_rss_mib']:.0f}",
              f"{1e6 * r['fit_s'] / r['n_atoms']:.0f}", f"{r['train_energy_rmse']:.2f}",
              f"{r['train_forces_rmse']:.3f}"] for r in rows]
    print(format_table(header, table))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_description(), "code": source_version(__file__),
                       "threads": args.threads, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
