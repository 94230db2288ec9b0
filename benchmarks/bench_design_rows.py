"""Time of the linear-fit design-matrix kernel (``Evaluator.design_rows``), issue 5 target 4.

Basis: bcc Mo, SBessel rcut 5 Å, one density, nradmax_by_orders [15, 8, 5, 3, 2],
lmax_by_orders [0, 5, 3, 2, 1], capped at ``--n-functions`` (default 1000: per rank
1: 15, 2: 182, 3: 492, 4: 281, 5: 30). Structure: ``--size``^3 cubic bcc cells (3 -> 54
atoms), rattled 0.05 Å. Timed: rows of one structure (per-atom B, force rows, strain rows) on
a prebuilt neighbour list, median and minimum wall time over ``--repeats`` calls after a
warm-up; a checksum of the rows lets two builds be compared:

    PYTHONPATH=. python benchmarks/bench_design_rows.py [--threads 1] [--size 3]
    PYTHONPATH=/path/to/older/checkout python benchmarks/bench_design_rows.py   # before
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_description, repeat_timing, source_version  # noqa: E402


def basis_config(n_functions):
    return {
        "elements": ["Mo"],
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1],
                               "ndensity": 1}},
        "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": 5.0,
                          "dcut": 0.01}},
        "functions": {"number_of_functions_per_element": n_functions,
                      "ALL": {"nradmax_by_orders": [15, 8, 5, 3, 2],
                              "lmax_by_orders": [0, 5, 3, 2, 1]}},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-functions", type=int, default=1000)
    parser.add_argument("--size", type=int, default=3, help="cubic bcc cells per axis")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from ace.basis import build_basis
    from ace.evaluator import Evaluator, Structure
    from ace.potential import ACEPotential
    import ace._core._evaluator as core
    from bench_evaluate import workload

    potential = ACEPotential.from_basis(build_basis(basis_config(args.n_functions)))
    atoms = workload(args.size, args.seed)
    structure = Structure.from_atoms(potential, atoms)
    evaluator = Evaluator(potential)
    nl = evaluator.neighbours(structure, args.threads)
    rows = evaluator.design_rows(structure, args.threads, nl)
    timing = repeat_timing(lambda: evaluator.design_rows(structure, args.threads, nl),
                           repeats=args.repeats)
    print(f"machine: {machine_description()}")
    print(f"ace: {source_version(core.__file__)} ({os.path.dirname(core.__file__)})")
    print(f"{potential.n_functions} functions {dict(sorted(potential.counts()['Mo'].items()))}, "
          f"{len(atoms)} atoms, {len(nl) / len(atoms):.1f} pairs/atom, {args.threads} thread(s)")
    print(f"design_rows: median {timing.median * 1e3:.1f} ms, min {min(timing.times) * 1e3:.1f} ms "
          f"({timing.median / len(atoms) * 1e3:.3f} ms/atom); checksum "
          f"{np.abs(rows.per_atom).sum():.10e} {np.abs(rows.forces).sum():.10e} "
          f"{np.abs(rows.strain_derivative).sum():.10e}")
    return timing


if __name__ == "__main__":
    main()
