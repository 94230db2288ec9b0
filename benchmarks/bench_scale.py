"""Fitting beyond one process (issue 21): Dask against the in-process fit, memory against data
size, time against workers.

Three parts (``--parts``, default all):

* ``equal``: the mlearn Si training set (214 structures, 13 233 atoms), ``--n-functions``
  functions, 5-fold cross-validation: the in-memory fit (``fit_linear`` as ``ace fit`` runs it
  by default), the streamed in-process fit (``ChunkedAssembly`` on this process) and the Dask
  fit (LocalCluster, 2 workers x 1 thread); the largest relative difference of the
  coefficients, and the chosen weights and ridge.
* ``memory``: generated EMT Cu data (64-atom rattled, strained fcc cells; files of 10^4 atoms)
  of ``--sizes`` atoms, streamed from disk, fitted on a LocalCluster of 2 worker processes x 1
  thread (the chunks' summary pass, the normal equations with 5-fold CV, the error table) with
  60 functions. Each size runs in its own child process with its own cluster, so the peak
  RSS (VmHWM) of the client and of each worker is that size's.
* ``workers``: the normal-equation pass on the EMT set of ``--workers-size`` atoms with
  1 and 2 Dask workers (and the in-process engine), median of ``--repeats`` interleaved runs;
  the cost of one chunk in one process, the bytes a task sends (its arguments) and returns
  (its per-fold normal equations), the client's time to add one chunk's result; and from them
  the estimate of the time on N machines.

    PYTHONPATH=. python benchmarks/bench_scale.py [--parts equal,memory,workers]
        [--sizes 10000,100000,300000] [--n-functions 300] [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_table, machine_description, peak_rss_mb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SI = os.path.join(os.path.dirname(ROOT), "shared", "data", "mlearn", "Si", "train.xyz")
ATOMS_PER_FILE = 10_000
CHUNK_STRUCTURES = 64  # 64 x 64 = 4096 atoms per chunk
EMT_FUNCTIONS = 60


def basis_dict(element, n_functions, cutoff):
    return {"elements": [element],
            "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                   "fs_parameters": [1, 1]}},
            "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": cutoff,
                              "dcut": 0.01}},
            "functions": {"number_of_functions_per_element": n_functions,
                          "ALL": {"nradmax_by_orders": [16, 8, 6, 4, 3],
                                  "lmax_by_orders": [0, 6, 4, 3, 2]}}}


def potential_for(element, n_functions, cutoff):
    from ace.basis import build_basis
    from ace.potential import ACEPotential

    return ACEPotential.from_basis(build_basis(basis_dict(element, n_functions, cutoff)))


def dask_engine(workers, processes=True):
    from ace.fitting.distributed import DaskEngine, EngineSettings

    if processes:
        return DaskEngine(EngineSettings("dask", None, workers, 1))
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                           dashboard_address=None)
    engine = DaskEngine(client=Client(cluster))
    engine._own, engine._cluster = True, cluster
    return engine


# ---------------------------------------------------------------------- equal coefficients

def part_equal(si_path, n_functions):
    from ace.data import read_dataset
    from ace.fitting.distributed import ChunkedAssembly, summarise
    from ace.fitting.linear import LossSettings, fit_linear
    from ace.stream import StreamedDataset

    potential = potential_for("Si", n_functions, 5.0)
    settings = LossSettings()
    out = {}
    start = time.perf_counter()
    memory = read_dataset(si_path, warn_duplicates=False)
    fits = {"in-memory": fit_linear(potential, memory, settings, num_threads=1)}
    out["in-memory seconds"] = time.perf_counter() - start
    # the same in-memory fit with its rows summed in blocks of 1000 instead of 4096: how much
    # the order of the additions alone moves the coefficients at this conditioning
    fits["in-memory, chunk_rows 1000"] = fit_linear(potential, memory, settings, num_threads=1,
                                                    chunk_rows=1000)
    start = time.perf_counter()
    streamed = StreamedDataset.open(si_path, chunk_structures=16)
    fits["streamed in-process"] = fit_linear(potential, streamed, settings, num_threads=1,
                                             assemble=ChunkedAssembly())
    out["streamed in-process seconds"] = time.perf_counter() - start
    with dask_engine(2) as engine:
        start = time.perf_counter()
        streamed = StreamedDataset.open(si_path, chunk_structures=16, map=summarise(engine))
        fits["dask 2x1"] = fit_linear(potential, streamed, settings,
                                      assemble=ChunkedAssembly(engine))
        out["dask seconds"] = time.perf_counter() - start
    reference = fits["in-memory"].potential.coefficients
    streamed_c = fits["streamed in-process"].potential.coefficients
    dask_c = fits["dask 2x1"].potential.coefficients
    # a fixed, firmer ridge (l2 1e-6 instead of the chosen 1e-12): the difference of the
    # summation orders shrinks with the conditioning
    firm = LossSettings(forces=fits["in-memory"].report["weights"]["forces"], l2=1e-6)
    firm_memory = fit_linear(potential, memory, firm, num_threads=1).potential.coefficients
    firm_streamed = fit_linear(potential, streamed, firm, num_threads=1,
                               assemble=ChunkedAssembly()).potential.coefficients
    out["l2 1e-6: streamed (= dask) vs in-memory"] = float(
        np.abs(firm_streamed - firm_memory).max() / np.abs(firm_memory).max())
    blocks = fits["in-memory, chunk_rows 1000"].potential.coefficients
    out.update({
        "n_functions": potential.n_functions, "chunks": len(streamed.chunks),
        "in-memory chunk_rows 1000 vs 4096": float(np.abs(blocks - reference).max()
                                                   / np.abs(reference).max()),
        "round-off bound 100 kappa^2 eps": 100 * fits["in-memory"].report["condition"] ** 2
        * np.finfo(float).eps,
        "dask vs in-memory": float(np.abs(dask_c - reference).max() / np.abs(reference).max()),
        "dask vs streamed in-process": float(np.abs(dask_c - streamed_c).max()
                                             / np.abs(streamed_c).max()),
        "choices": {name: {"l2": f.report["l2"], "forces": f.report["weights"]["forces"],
                           "stress": f.report["weights"]["stress"],
                           "condition": f.report["condition"]} for name, f in fits.items()},
    })
    return out


# ---------------------------------------------------------------------- generated data

def generate_emt(directory, n_atoms, seed=0):
    """Files of ATOMS_PER_FILE atoms of EMT-labelled 64-atom Cu cells in ``directory`` (made
    once; the files of a larger set start with those of a smaller one)."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT

    os.makedirs(directory, exist_ok=True)
    per_file = ATOMS_PER_FILE // 64
    n_files = max(1, round(n_atoms / (per_file * 64)))
    paths = []
    for f in range(n_files):
        path = os.path.join(directory, f"emt-{f:04d}.xyz")
        paths.append(path)
        if os.path.exists(path):
            continue
        rng = np.random.default_rng(seed + f)
        images = []
        for k in range(per_file):
            atoms = bulk("Cu", "fcc", a=3.6 * (1 + 0.03 * rng.normal()), cubic=True)
            atoms = atoms.repeat((2, 2, 4))
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.normal(size=(3, 3))),
                           scale_atoms=True)
            atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
            atoms.calc = EMT()
            atoms.get_potential_energy()
            atoms.get_forces()
            atoms.get_stress()
            atoms.info["config_type"] = ("bulk", "strained")[k % 2]
            images.append(atoms)
        ase.io.write(path + ".tmp", images, format="extxyz")
        os.replace(path + ".tmp", path)
    return paths


def high_water_mb():
    """Peak resident set size of this process image in MiB: VmHWM of /proc/self/status, which
    starts afresh at exec (ru_maxrss keeps the high-water mark of the process that forked and
    exec'd us: the benchmark's parent, grown by generating the data)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return peak_rss_mb()


def child_memory(paths, workers):
    """One size: summary, normal equations (5-fold CV) and error table on a fresh cluster."""
    from ace.fitting.distributed import ChunkedAssembly, chunked_error_table, summarise
    from ace.fitting.linear import LossSettings, fit_linear
    from ace.stream import StreamedDataset

    potential = potential_for("Cu", EMT_FUNCTIONS, 4.5)
    start = time.perf_counter()
    with dask_engine(workers) as engine:
        data = StreamedDataset.open(paths, chunk_structures=CHUNK_STRUCTURES,
                                    map=summarise(engine))
        summary = time.perf_counter() - start
        assembly = ChunkedAssembly(engine)
        fit = fit_linear(potential, data, LossSettings(), assemble=assembly)
        table = chunked_error_table(fit.potential, data, engine)
        workers_rss = engine.client.run(high_water_mb)
    return {"atoms": data.total_atoms, "structures": len(data), "chunks": len(data.chunks),
            "client_peak_mb": high_water_mb(), "worker_peak_mb": sorted(workers_rss.values()),
            "seconds": time.perf_counter() - start, "summary_seconds": summary,
            "assembly_seconds": assembly.stats["seconds"],
            "energy_rmse_mev": table["overall"]["energy_rmse"]}


def part_memory(directory, sizes):
    rows = []
    for size in sizes:
        paths = generate_emt(directory, size)
        script = (f"import sys, json; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                  f"import bench_scale; print(json.dumps(bench_scale.child_memory("
                  f"{paths!r}, 2)))")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------- workers

def part_workers(directory, size, repeats):
    from ace.fitting.distributed import (ChunkedAssembly, InProcessEngine,
                                         _NormalEquationsTask, chunk_normal_equations)
    from ace.fitting.linear import LossSettings, fold_indices, structure_weights
    from ace.stream import StreamedDataset

    paths = generate_emt(directory, size)
    potential = potential_for("Cu", EMT_FUNCTIONS, 4.5)
    data = StreamedDataset.open(paths, chunk_structures=CHUNK_STRUCTURES)
    weights = structure_weights(data, LossSettings(), potential.elements)
    parts = fold_indices(data, 5)
    engines = {"in-process": InProcessEngine(), "dask 1 worker": dask_engine(1),
               "dask 2 workers": dask_engine(2)}
    times = {name: [] for name in engines}
    stats = {}
    for _ in range(repeats):
        for name, engine in engines.items():
            assembly = ChunkedAssembly(engine)
            assembly(potential, data, weights, num_threads=1, parts=parts)
            times[name].append(assembly.stats["seconds"])
            stats[name] = assembly.stats
    for engine in engines.values():
        engine.close()
    # one chunk in this process: its cost, what a task sends and returns, the client's sum
    task = _NormalEquationsTask(potential, data.keys, None, 1, 4096, 5)
    a, b = data.starts[0], data.starts[1]
    item = (data.chunks[0], weights[a:b], parts[a:b])
    costs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = chunk_normal_equations(task, item)
        costs.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(10):
        [x + y for x, y in zip(result, result)]
    add_seconds = (time.perf_counter() - start) / 10
    return {"atoms": data.total_atoms, "chunks": len(data.chunks),
            "atoms_per_chunk": int(data.n_atoms[a:b].sum()),
            "parameters": potential.n_functions + 1,
            "median_seconds": {n: statistics.median(t) for n, t in times.items()},
            "all_seconds": times, "chunk_seconds": statistics.median(costs),
            "task_upload_bytes": len(pickle.dumps((task, item))),
            "task_result_bytes": stats["dask 2 workers"]["result_bytes"],
            "result_pickle_bytes": len(pickle.dumps(result)),
            "client_add_seconds": add_seconds}


def estimate(w, machines, cores=2, bandwidth=100e6):
    """Seconds of the normal-equation pass on ``machines`` machines of ``cores`` workers:
    the chunks' compute shared out, plus each result's transfer (``bandwidth`` bytes/s into
    the client) and addition, which the client does one after the other."""
    compute = w["chunks"] * w["chunk_seconds"] / (machines * cores)
    serial = w["chunks"] * (w["task_result_bytes"] / bandwidth + w["client_add_seconds"])
    return max(compute, serial) + w["chunk_seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="equal,memory,workers")
    parser.add_argument("--si", default=DEFAULT_SI, help="mlearn Si train.xyz")
    parser.add_argument("--n-functions", type=int, default=300)
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--workers-size", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=os.path.join(ROOT, ".bench_scale_data"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    parts = args.parts.split(",")
    print(machine_description(), flush=True)
    results = {"machine": machine_description(), "load_before": os.getloadavg()}
    if "equal" in parts:
        if not os.path.exists(args.si):
            print(f"skipping equal: {args.si} not found")
        else:
            results["equal"] = part_equal(args.si, args.n_functions)
            print(json.dumps(results["equal"], indent=1), flush=True)
    if "memory" in parts:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        rows = part_memory(args.data_dir, sizes)
        results["memory"] = rows
        print(format_table(
            ["atoms", "chunks", "client peak MiB", "worker peak MiB", "seconds"],
            [[r["atoms"], r["chunks"], f"{r['client_peak_mb']:.0f}",
              " / ".join(f"{m:.0f}" for m in r["worker_peak_mb"]), f"{r['seconds']:.0f}"]
             for r in rows]), flush=True)
    if "workers" in parts:
        w = part_workers(args.data_dir, args.workers_size, args.repeats)
        w["estimate_seconds"] = {n: estimate(w, n) for n in (1, 2, 4, 8, 16, 64)}
        results["workers"] = w
        print(json.dumps(w, indent=1), flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    for path in glob.glob(os.path.join(args.data_dir, "*.tmp")):
        os.remove(path)


if __name__ == "__main__":
    main()
