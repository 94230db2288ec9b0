"""Nonlinear fit: cost of one loss and one loss+gradient evaluation per atom (issue 6).

Model: Mo, FinnisSinclairShiftedScaled with 2 densities (fs_parameters [1, 1, 1, 0.5]),
SBessel with rcut 5.2 Å, 500 functions (nradmax_by_orders [15, 6, 4, 3, 2], lmax_by_orders
[0, 4, 3, 2, 1]); trainable: both densities' coefficients, the radial coefficients and E0.
Data: the mlearn Mo training set (../shared/data/mlearn/Mo/train.xyz), all structures, forces
and stresses in the loss. Neighbour lists are built once (as in a fit) and not timed.

Printed: median (min) seconds per call and microseconds per atom of
  loss           the data terms only (energies, forces, stresses),
  loss+gradient  the value and the exact gradient in every parameter,
  varpro step    what one evaluation of the default optimiser (variable projection) costs:
                 the first density's coefficients and E0 solved by linear least squares
                 (design rows and normal equations on all the data), then loss+gradient,
and the loss+gradient / loss ratio (target <= 3), beside pacemaker's TensorFlow loss+gradient on the same model
class and data as quoted in issue 6 (about 430 µs/atom on the 2-core machine; TensorFlow is not
installed here, so that figure is a reference, not measured in this run).

    PYTHONPATH=. python benchmarks/bench_nonlinear.py [--repeats 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_evaluate import potential_config  # noqa: E402
from common import format_table, interleaved_timing, machine_description, peak_rss_mb  # noqa

from ace.basis import build_basis  # noqa: E402
from ace.data import read_dataset  # noqa: E402
from ace.evaluator import compile_model  # noqa: E402
from ace.fitting.nonlinear import (LinearProjection, NonlinearLoss, ParameterLayout,  # noqa: E402
                               make_batches)
from ace.potential import ACEPotential  # noqa: E402

PACEMAKER_US_PER_ATOM = 430.0  # issue 6: pacemaker + TensorFlow 2.20 CPU, same model and data
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mlearn", "Mo",
                    "train.xyz")


def model(n_functions, seed=0):
    config = potential_config(n_functions)  # issue 5's basis, with issue 6's cutoff
    config["bonds"]["ALL"]["rcut"] = 5.2
    basis = build_basis(config)
    rng = np.random.default_rng(seed)
    coefficients = 0.01 * rng.standard_normal((basis.n_functions, 2))
    rank1 = [k for k, f in enumerate(basis.functions) if f.rank == 1]
    coefficients[rank1, 1] = np.abs(coefficients[rank1, 1]) + 1.0  # rho_2 > 0
    return ACEPotential.from_basis(basis, coefficients)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-functions", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", default=DATA)
    args = parser.parse_args(argv)

    potential = model(args.n_functions)
    data = read_dataset([args.data])
    layout = ParameterLayout(potential)
    batches = make_batches(potential, data, np.ones(len(data)))
    design = compile_model(potential, design=True)
    n_atoms = data.total_atoms
    n_pairs = sum(len(b.pair_j) for b in batches)
    theta = layout.pack()
    print(machine_description())
    print(f"model: {potential.n_functions} functions, {layout.size} parameters "
          f"({layout.sizes[0]} coefficients, {layout.sizes[1]} radial, {layout.sizes[2]} E0); "
          f"data: {len(data)} structures, {n_atoms} atoms, {n_pairs} pairs")
    functions = {}
    for threads in args.threads:
        loss = NonlinearLoss(layout, design, batches, {"forces": 1.0, "stress": 0.1},
                             np.zeros(potential.n_functions), 1e-6, num_threads=threads)
        functions[f"loss, {threads} thr"] = (lambda loss=loss: loss.terms(theta))
        functions[f"loss+gradient, {threads} thr"] = (
            lambda loss=loss: loss.value_and_gradient(theta))
        projection = LinearProjection(layout, data, np.ones(len(data)), loss.tau, loss.penalty,
                                      threads)
        functions[f"varpro step, {threads} thr"] = (
            lambda loss=loss, projection=projection:
            loss.value_and_gradient(projection.solve(theta)))
    timings = interleaved_timing(functions, repeats=args.repeats)
    rows = []
    for name, timing in timings.items():
        rows.append([name, f"{timing.median:.3f} ({min(timing.times):.3f})",
                     f"{1e6 * timing.median / n_atoms:.1f}",
                     f"{1e6 * timing.cpu_median / n_atoms:.1f}",
                     f"{1e6 * timing.median / n_atoms / PACEMAKER_US_PER_ATOM:.2f}"])
    # CPU time (all threads of the process) is the steadier figure on a loaded machine
    print(format_table(["call", "s median (min)", "µs/atom", "CPU µs/atom",
                        "/ pacemaker TF (430)"], rows))
    for threads in args.threads:
        ratio = (timings[f"loss+gradient, {threads} thr"].median
                 / timings[f"loss, {threads} thr"].median)
        varpro = (timings[f"varpro step, {threads} thr"].median
                  / timings[f"loss+gradient, {threads} thr"].median)
        print(f"{threads} thread(s): loss+gradient / loss = {ratio:.2f} (target <= 3); "
              f"varpro step / loss+gradient = {varpro:.2f}")
    if len(args.threads) > 1:
        a, b = args.threads[0], args.threads[-1]
        speedup = (timings[f"loss+gradient, {a} thr"].median
                   / timings[f"loss+gradient, {b} thr"].median)
        print(f"loss+gradient speedup {a} -> {b} threads: {speedup:.2f}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
