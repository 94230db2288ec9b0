"""Where a potential can be trusted: cost of the extrapolation grade, and how well gamma and the
committee std detect out-of-domain structures and track the error.

``cost``: energy+forces through ACECalculator with and without an active set (gamma in
normalised, linear and full mode) on bench_evaluate.py's workload (bcc Mo, 2000 atoms, 600 functions, 2
densities), positions-only changes (the MD case), calls interleaved; also the parts: the energy
kernel with and without the projections, the separate projection kernel, the per-element matrix
product, and the path before the projections came from the energy pass (energy+forces, then
the projection kernel, then the product on a copy of the rows with BLAS' default threads), in
the same run. The active sets come from 40 rattled 54-atom cells of the same potential. Also
printed: the cancellation in b A⁻¹ (median over atoms of max_j (|b| |A⁻¹|)_j / gamma), which
decides whether a float32 product could be used. BLAS runs on ``--threads`` threads in the
calculator; the "before" entry leaves BLAS at its default, as the code then did.

``detection``: for Mo and Si (mlearn), the four-key config (elements, cutoff, data, output:
ace's default linear basis) fitted on the training set without its ``Surface`` structures,
an active set on that training set in each of ``--modes`` (default: normalised, ace's grade,
and linear, pacemaker's) and a committee (K = 32) from the fit's posterior. Reported: the ROC AUC with which max gamma, the 90th percentile of gamma over the
structure's atoms and the committee energy std per atom separate the held-out surfaces (train and test) from the in-domain test structures, their
medians, and Spearman's rank correlation on the in-domain test set between each signal and
the actual error (per structure: |energy error| per atom against committee std per atom and
max gamma; per atom: |force error| against the committee force std and gamma).

``calibration``: the shipped linear potentials (potentials/<El>.yaml) on the whole mlearn test
sets, active sets on the whole training sets: Spearman's rank correlation of the committee std
and of gamma with the actual error, per structure (energy) and per atom (forces).

    PYTHONPATH=. python benchmarks/bench_trust.py cost [--repeats 5]
    PYTHONPATH=. python benchmarks/bench_trust.py detection [--elements Mo Si] [--data DIR]
        [--modes normalised linear]
    PYTHONPATH=. python benchmarks/bench_trust.py calibration [--elements Mo Si]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from ase.calculators.calculator import all_changes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_table, interleaved_timing, machine_description, source_version  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "mlearn")
HELD_OUT = "Surface"


# ---------------------------------------------------------------------------------- cost

def run_cost(args):
    from bench_evaluate import build_ours, potential_config, workload

    from ace._core._evaluator import energy_forces
    from ace.calculator import ACECalculator
    from ace.evaluator import Evaluator, Structure
    from ace.uncertainty import build_active_set
    from ace.uncertainty.projections import structure_projections

    potential = build_ours(potential_config(args.n_functions), 0)
    atoms = workload(args.size, 0)
    train = [workload(3, seed) for seed in range(1, 41)]
    active = {}
    for mode in ("normalised", "linear", "full"):
        start = time.perf_counter()
        active[mode] = build_active_set(potential, train, mode=mode)
        print(f"{mode} active set: {time.perf_counter() - start:.1f} s", flush=True)
    calculators = {"energy+forces": ACECalculator(potential, num_threads=args.threads)}
    for mode, active_set in active.items():
        calculators[f"+ gamma ({mode})"] = ACECalculator(
            potential, num_threads=args.threads, active_set=active_set, gamma_warning=None)
    calls = {}
    for name, calc in calculators.items():
        image = atoms.copy()
        image.calc = calc
        calc.calculate(image, ["energy", "forces"], list(all_changes))

        def call(calc=calc, image=image):
            image.positions[0, 0] += 1e-4  # positions only: the neighbour list is reused
            calc.calculate(image, ["energy", "forces"], ["positions"])

        calls[name] = call
    evaluator = Evaluator(potential)
    structure = Structure.from_atoms(potential, atoms)
    nl = evaluator.neighbours(structure, args.threads)
    vectors = np.ascontiguousarray(nl.vectors)
    plain_model = evaluator.energy_model
    projection_model = evaluator.projection_model

    def kernel(model, mode=None):
        extra = {} if mode is None else {
            "projections": np.zeros((len(atoms), model.projection_width(mode == "full"))),
            "full": mode == "full"}
        return energy_forces(model, structure.species, nl.first, nl.i, nl.j, vectors,
                             args.threads, **extra)

    calls["kernel: energy+forces"] = lambda: kernel(plain_model)
    for mode in ("linear", "full"):  # the parts (normalised: linear's plus a row scaling)
        active_set = active[mode]
        rows = structure_projections(evaluator, structure, mode, nl, args.threads)
        inverse = active_set.inverses["Mo"]
        if mode == "linear":
            cancellation = (np.abs(rows) @ np.abs(inverse)).max(axis=1) / np.abs(
                rows @ inverse).max(axis=1)
            print(f"cancellation in b A^-1 (linear): median {np.median(cancellation):.3g}, "
                  f"condition number of A {np.linalg.cond(active_set.matrices['Mo']):.3g}")
        calls[f"kernel: energy+forces+projections ({mode})"] = (
            lambda mode=mode: kernel(projection_model, mode))
        calls[f"kernel: projections alone ({mode})"] = (
            lambda mode=mode: structure_projections(evaluator, structure, mode, nl, args.threads))
        calls[f"matrix product ({mode})"] = (
            lambda rows=rows, active_set=active_set: active_set.gamma(
                rows, structure.species, args.threads))
        before = ACECalculator(potential, num_threads=args.threads)
        image = atoms.copy()
        before.calculate(image, ["energy", "forces"], list(all_changes))

        def previous(mode=mode, inverse=inverse, image=image, before=before):
            # energy pass, separate projection pass, product on a copy (default BLAS threads)
            image.positions[0, 0] += 1e-4
            before.calculate(image, ["energy", "forces"], ["positions"])
            projections = structure_projections(evaluator, structure, mode, nl, args.threads)
            atoms_of_e = np.flatnonzero(structure.species == 0)
            return np.abs(projections[atoms_of_e, :inverse.shape[0]] @ inverse).max(axis=1)

        calls[f"before: + gamma ({mode})"] = previous
    timings = interleaved_timing(calls, repeats=args.repeats)
    base = np.median(timings["energy+forces"].times)
    rows = [[name, f"{np.median(t.times) * 1e3:.0f}", f"{min(t.times) * 1e3:.0f}",
             f"{np.median(t.times) / base:.2f}"] for name, t in timings.items()]
    print(f"\n{len(atoms)} atoms, {potential.n_functions} functions, 2 densities, "
          f"{args.threads} thread(s); {machine_description()}; ace {source_version(__file__)}")
    print(format_table(["", "median ms", "min ms", "x energy+forces"], rows))


# ----------------------------------------------------------------------------- detection

def auc(positives, negatives):
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    positives = np.asarray(positives, float)[:, None]
    negatives = np.asarray(negatives, float)[None, :]
    return float(np.mean((positives > negatives) + 0.5 * (positives == negatives)))


def spearman(x, y):
    from scipy.stats import spearmanr
    return float(spearmanr(x, y).statistic)


def fit_without_surfaces(element, data_dir, workdir, threads):
    """The four-key config on the training set without its surfaces: (LinearFit, train)."""
    import ase.io

    from ace.fitting.workflow import build_potential, load_data
    from ace.fitting.config import FitConfig
    from ace.fitting.linear import fit_linear
    from ace.fitting.nonlinear import linear_part

    train = [a for a in ase.io.read(os.path.join(data_dir, element, "train.xyz"), ":")
             if a.info.get("config_type") != HELD_OUT]
    path = os.path.join(workdir, f"{element}-train.xyz")
    ase.io.write(path, train)
    config_path = os.path.join(workdir, f"{element}.config.yaml")
    with open(config_path, "w") as fh:
        fh.write(f"elements: [{element}]\ncutoff: 5.0\ndata:\n  train: {path}\n"
                 f"output: {os.path.join(workdir, element + '.yaml')}\n")
    config = FitConfig.load(config_path)
    config.num_threads = threads
    config.progress = False
    train_set, _ = load_data(config)
    potential, _ = build_potential(config, train_set)
    fit = fit_linear(linear_part(potential), train_set, config.loss, num_threads=threads,
                     chunk_rows=config.chunk_rows)
    return fit, train_set, train


def signals(potential, active_set, images, threads):
    """Per structure: max gamma, committee energy std per atom, |energy error| per atom, the
    90th percentile of gamma over the atoms; per atom: gamma, committee force std (norm),
    |force error| (norm)."""
    from ace.calculator import ACECalculator
    calc = ACECalculator(potential, num_threads=threads, active_set=active_set, committee=True,
                         gamma_warning=None)
    per_structure, per_atom = [], []
    for atoms in images:
        reference_energy = atoms.get_potential_energy()
        reference_forces = atoms.get_forces()
        work = atoms.copy()
        work.calc = calc
        energy = work.get_potential_energy()
        forces = work.get_forces()
        n = len(atoms)
        per_structure.append((calc.results["max_gamma"], calc.results["energy_std"] / n,
                              abs(energy - reference_energy) / n,
                              np.percentile(calc.results["gamma"], 90)))
        per_atom += list(zip(calc.results["gamma"],
                             np.linalg.norm(calc.results["forces_std"], axis=1),
                             np.linalg.norm(forces - reference_forces, axis=1)))
    return np.array(per_structure), np.array(per_atom)


def run_detection(args):
    import ase.io

    from ace.fitting.linear import fit_committee
    from ace.uncertainty import build_active_set

    results = {}
    for element in args.elements:
        with tempfile.TemporaryDirectory() as workdir:
            start = time.perf_counter()
            fit, train_set, train_images = fit_without_surfaces(element, args.data, workdir,
                                                                args.threads)
            fitted = time.perf_counter()
            potential = fit_committee(fit, train_set, n_members=32, num_threads=args.threads)
            committee_time = time.perf_counter() - fitted
        test = ase.io.read(os.path.join(args.data, element, "test.xyz"), ":")
        surfaces = [a for a in ase.io.read(os.path.join(args.data, element, "train.xyz"), ":")
                    + test if a.info.get("config_type") == HELD_OUT]
        in_domain = [a for a in test if a.info.get("config_type") != HELD_OUT]
        result = results[element] = {
            "functions": potential.n_functions,
            "seconds": {"fit": round(fitted - start, 1), "committee": round(committee_time, 1)},
            "n_structures": {"surfaces": len(surfaces), "in_domain": len(in_domain)},
            "modes": {}}
        for mode in args.modes:
            start_active = time.perf_counter()
            active_set = build_active_set(potential, train_images, mode=mode,
                                          num_threads=args.threads)
            result["seconds"][f"active_set_{mode}"] = round(time.perf_counter() - start_active, 1)
            out_s, _ = signals(potential, active_set, surfaces, args.threads)
            in_s, in_a = signals(potential, active_set, in_domain, args.threads)
            result["modes"][mode] = {
                "auc_max_gamma": auc(out_s[:, 0], in_s[:, 0]),
                "auc_gamma_p90": auc(out_s[:, 3], in_s[:, 3]),
                "median_max_gamma": {"surfaces": float(np.median(out_s[:, 0])),
                                     "in_domain": float(np.median(in_s[:, 0])),
                                     "in_domain_max": float(in_s[:, 0].max())},
                "spearman_energy_max_gamma": spearman(in_s[:, 0], in_s[:, 2]),
                "spearman_forces_gamma": spearman(in_a[:, 0], in_a[:, 2])}
        # the committee does not depend on the active set: from the last mode's pass
        result.update({
            "auc_committee_energy_std": auc(out_s[:, 1], in_s[:, 1]),
            "median_energy_std_meV": {"surfaces": 1e3 * float(np.median(out_s[:, 1])),
                                      "in_domain": 1e3 * float(np.median(in_s[:, 1]))},
            "median_energy_error_meV": {"surfaces": 1e3 * float(np.median(out_s[:, 2])),
                                        "in_domain": 1e3 * float(np.median(in_s[:, 2]))},
            "spearman_energy_committee_std": spearman(in_s[:, 1], in_s[:, 2]),
            "spearman_forces_committee_std": spearman(in_a[:, 1], in_a[:, 2])})
        print(json.dumps({element: result}, indent=1), flush=True)
    rows = [[el, mode, r["functions"], f"{m['auc_max_gamma']:.2f}", f"{m['auc_gamma_p90']:.2f}",
             f"{r['auc_committee_energy_std']:.2f}",
             f"{m['median_max_gamma']['surfaces']:.3g} / {m['median_max_gamma']['in_domain']:.3g}"
             f" ({m['median_max_gamma']['in_domain_max']:.3g})",
             f"{r['spearman_energy_committee_std']:.2f} / {m['spearman_energy_max_gamma']:.2f}",
             f"{r['spearman_forces_committee_std']:.2f} / {m['spearman_forces_gamma']:.2f}"]
            for el, r in results.items() for mode, m in r["modes"].items()]
    print(f"\n{machine_description()}; ace {source_version(__file__)}")
    print(format_table(["", "mode", "functions", "AUC max gamma", "AUC gamma p90",
                        "AUC committee std", "median max gamma surf / in (in max)",
                        "Spearman E: std / gamma", "Spearman F: std / gamma"], rows))


def run_calibration(args):
    """Spearman correlation of each signal with the actual error, shipped potentials on the
    whole mlearn test sets, active sets on the whole training sets."""
    import ase.io

    import ace
    from ace.uncertainty import build_active_set

    rows = []
    for element in args.elements:
        potential = ace.load(os.path.join(args.potentials, f"{element}.yaml"))
        train = ase.io.read(os.path.join(args.data, element, "train.xyz"), ":")
        test = ase.io.read(os.path.join(args.data, element, "test.xyz"), ":")
        for mode in args.modes:
            active_set = build_active_set(potential, train, mode=mode, num_threads=args.threads)
            per_structure, per_atom = signals(potential, active_set, test, args.threads)
            rows.append([element, mode,
                         f"{spearman(per_structure[:, 1], per_structure[:, 2]):.2f}",
                         f"{spearman(per_structure[:, 0], per_structure[:, 2]):.2f}",
                         f"{spearman(per_atom[:, 1], per_atom[:, 2]):.2f}",
                         f"{spearman(per_atom[:, 0], per_atom[:, 2]):.2f}"])
            print(rows[-1], flush=True)
    print(f"\n{machine_description()}; ace {source_version(__file__)}")
    print(format_table(["", "mode", "E: committee std", "E: max gamma", "F: committee std",
                        "F: gamma"], rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cost = commands.add_parser("cost")
    cost.add_argument("--repeats", type=int, default=5)
    cost.add_argument("--size", type=int, default=10)
    cost.add_argument("--n-functions", type=int, default=600)
    cost.add_argument("--threads", type=int, default=1)
    detection = commands.add_parser("detection")
    detection.add_argument("--elements", nargs="+", default=["Mo", "Si"])
    detection.add_argument("--data", default=DATA)
    detection.add_argument("--threads", type=int, default=1)
    detection.add_argument("--modes", nargs="+", default=["normalised", "linear"],
                           help="active-set modes to compare (the default first)")
    calibration = commands.add_parser("calibration")
    calibration.add_argument("--elements", nargs="+", default=["Mo", "Si"])
    calibration.add_argument("--data", default=DATA)
    calibration.add_argument("--potentials", default=os.path.join(HERE, "..", "potentials"))
    calibration.add_argument("--threads", type=int, default=1)
    calibration.add_argument("--modes", nargs="+", default=["normalised", "linear"])
    args = parser.parse_args()
    if args.command == "cost":
        run_cost(args)
        return
    if not os.path.isdir(args.data):
        sys.exit(f"no mlearn data at {args.data}")
    (run_detection if args.command == "detection" else run_calibration)(args)


if __name__ == "__main__":
    main()
