"""Learning curve of the default linear fit: test error against the amount of training data.

Fits ``ace fit``'s defaults (the config's four required keys; optionally a fixed basis size)
on stratified random subsets of a training set (a fraction of the structures of every
config_type, drawn by ``Dataset.split_indices``) and prints the train and test MAEs of each
fit. If the test error has stopped falling as data are added, and the training error of the
same model is near it, more data of the same kind will not lower it either: the rest is the
model's bias or the data's noise (see potentials/README.md, "Is the target reachable?").

    PYTHONPATH=. python potentials/learning_curve.py Mo            # data: ../shared/data/mlearn
    PYTHONPATH=. python potentials/learning_curve.py Si --functions 1000 --json si.json

A fit takes 5-30 s on one thread for the mlearn sets.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "mlearn")


def fit_subset(config, train, test, num_threads):
    """Linear fit of ``config``'s defaults on ``train`` (the basis ``ace.fit`` would build for
    it, without writing files): the overall rows of its train and test error tables, and its
    number of functions."""
    import ace
    from ace.fitting.linear import fit_linear
    from ace.fitting.workflow import build_potential

    potential, _ = build_potential(config, train)  # its messages go to logging, unshown
    fitted = fit_linear(potential, train, config.loss, num_threads=num_threads).potential
    return (ace.evaluate(fitted, train, num_threads=num_threads)["overall"],
            ace.evaluate(fitted, test, num_threads=num_threads)["overall"], fitted.n_functions)


def main(argv=None):
    from ace.data import read_dataset
    from ace.fitting.config import FitConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("element")
    parser.add_argument("--data", default=DEFAULT_DATA,
                        help="directory holding <element>/train.xyz and <element>/test.xyz")
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--fractions", default="0.25,0.5,0.75,1")
    parser.add_argument("--seeds", type=int, default=2, help="subsets drawn per fraction < 1")
    parser.add_argument("--functions", type=int, default=None,
                        help="fixed number of functions (default: the data-size rule)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)

    raw = {"elements": [args.element], "cutoff": args.cutoff,
           "data": {"train": os.path.join(args.data, args.element, "train.xyz"),
                    "test": os.path.join(args.data, args.element, "test.xyz")},
           "output": "unused.yaml"}
    if args.functions:
        raw["basis"] = {"functions": {"number_of_functions_per_element": args.functions}}
    config = FitConfig.from_dict(raw)
    train, test = read_dataset(config.train), read_dataset(config.test)
    print(f"{args.element}: train {train}, test {test}")
    header = (f"{'fraction':>8} {'seed':>4} {'structs':>7} {'funcs':>5} | {'train E':>7} "
              f"{'train F':>7} | {'test E':>7} {'test F':>7}   (MAE: meV/atom, eV/Å)")
    print(header)
    rows = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        seeds = range(args.seeds) if fraction < 1 else [0]
        for seed in seeds:
            subset = train.subset(train.split_indices(1 - fraction, seed)[0]) \
                if fraction < 1 else train
            on_train, on_test, n_functions = fit_subset(config, subset, test, args.threads)
            row = {"fraction": fraction, "seed": seed, "structures": len(subset),
                   "functions": n_functions,
                   "train_energy_mae": on_train["energy_mae"],
                   "train_forces_mae": on_train["forces_mae"],
                   "test_energy_mae": on_test["energy_mae"],
                   "test_forces_mae": on_test["forces_mae"]}
            rows.append(row)
            print(f"{fraction:8.2f} {seed:4d} {len(subset):7d} {n_functions:5d} | "
                  f"{row['train_energy_mae']:7.2f} {row['train_forces_mae']:7.4f} | "
                  f"{row['test_energy_mae']:7.2f} {row['test_forces_mae']:7.4f}", flush=True)
    print("\nmedian over seeds:")
    for fraction in sorted({r["fraction"] for r in rows}):
        same = [r for r in rows if r["fraction"] == fraction]
        print(f"{fraction:8.2f}: test E {statistics.median(r['test_energy_mae'] for r in same):.2f}"
              f", test F {statistics.median(r['test_forces_mae'] for r in same):.4f}"
              f", train F {statistics.median(r['train_forces_mae'] for r in same):.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
