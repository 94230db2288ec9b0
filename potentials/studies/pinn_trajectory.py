"""Where the error of a physically-informed potential goes as its fit proceeds (issue 20).

Fits <element>_pinn.config.yaml's model (descriptor, max_shift; one tau, no selection) on the
mlearn training set without one config_type group, on top of the traditional potential fitted
without that group, in segments of L-BFGS iterations that continue one uninterrupted run
(ace.fitting.lbfgs carries its memory over). After each segment it reports the training loss,
the energy and force MAE on the held-out group (its training and test structures) and on the
test set without the group ("in domain"), the mean signed energy error on the group, and the
RMS of Delta p per parameter on training and held-out atoms. A diagnostic: nothing here is
chosen by the test or held-out data.

    python potentials/studies/pinn_trajectory.py Mo [--group Surface] [--tau 1e-3]
        [--segment 50] [--iterations 200] [--unbounded] [--clip | --no-clip] [--functions N]
        [--workdir /tmp/ace-transfer]

The traditional fit and the split files are those of benchmarks/bench_transfer.py (run it
first with --families bop --groups <group>, or let this script fit it with its config).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_transfer  # noqa: E402

from ace.basis import build_basis  # noqa: E402
from ace.fitting.lbfgs import minimise  # noqa: E402
from ace.fitting.physically_informed import (PhysicallyInformedLoss,  # noqa: E402
                                             PhysicallyInformedSettings, descriptor_range,
                                             make_samples)
from ace.data import read_dataset  # noqa: E402
from ace.io import load_potential  # noqa: E402
from ace.physically_informed import (PhysicallyInformedEvaluator,  # noqa: E402
                                     PhysicallyInformedPotential)
from ace.potential import ACEPotential  # noqa: E402


def samples_of(potential, path):
    data = read_dataset([path])
    return make_samples(potential, data, np.ones(len(data)), num_threads=1)


def errors(potential, samples):
    """(energy MAE meV/atom, forces MAE eV/Å, mean signed energy error meV/atom); NaN when a
    structure leaves the form's domain."""
    evaluator = PhysicallyInformedEvaluator(potential)
    energy, forces = [], []
    for s in samples:
        try:
            r = evaluator.compute(s.structure, 1, s.nl, s.basis_values)
        except (ValueError, FloatingPointError):
            return float("nan"), float("nan"), float("nan")
        energy.append((r.energy - s.energy) / s.n_atoms)
        forces.append(np.abs(r.forces - s.forces).ravel())
    energy = 1e3 * np.array(energy)
    return float(np.abs(energy).mean()), float(np.concatenate(forces).mean()), float(energy.mean())


def delta_p_rms(potential, samples):
    rows = [potential.local_parameters(s.structure.species, s.basis_values)
            - potential.base_parameters[s.structure.species] for s in samples]
    rms = np.sqrt((np.concatenate(rows) ** 2).mean(axis=0))
    return dict(zip(potential.form.parameter_names, map(float, rms)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("element")
    parser.add_argument("--group", default="Surface")
    parser.add_argument("--tau", type=float, default=1e-3)
    parser.add_argument("--segment", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--unbounded", action="store_true", help="no max_shift")
    parser.add_argument("--clip", action=argparse.BooleanOptionalAction, default=None,
                        help="soft-clip B to its training range (default: the config's "
                             "clip_descriptor)")
    parser.add_argument("--functions", type=int, default=None,
                        help="descriptor functions per element (default: the config's)")
    parser.add_argument("--workdir", default="/tmp/ace-transfer")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    element, group, workdir = args.element, args.group, args.workdir
    os.makedirs(workdir, exist_ok=True)

    with open(os.path.join(ROOT, "potentials", f"{element}_pinn.config.yaml")) as fh:
        config = yaml.safe_load(fh)
    model = config["model"]
    train = bench_transfer.without_group(element, group, workdir)
    traditional_path = os.path.join(workdir, f"{element}-bop-without-{group}.yaml")
    bench_transfer.fit(bench_transfer.FAMILIES["bop"], element, train, traditional_path,
                       True, lambda m: print(m, file=sys.stderr))
    traditional = load_potential(traditional_path)
    basis = dict(model.get("basis") or {})
    if args.functions is not None:
        functions = dict(basis.get("functions") or {})
        functions["number_of_functions_per_element"] = args.functions
        basis["functions"] = functions
    settings = PhysicallyInformedSettings(
        form="bop", cutoff=config["cutoff"], traditional=traditional_path, basis=basis,
        max_shift=None if args.unbounded else model.get("max_shift"))
    descriptor = ACEPotential.from_basis(build_basis(settings.descriptor_dict([element])))
    p0 = np.array([traditional.parameters[element]])
    start = PhysicallyInformedPotential(traditional.form, descriptor, p0, e0=traditional.e0,
                                        max_shift=settings.shift_half_widths(p0))
    samples = samples_of(start, train)
    clip = model.get("clip_descriptor", False) if args.clip is None else args.clip
    if clip:
        start.descriptor_range = descriptor_range(start, samples)
    held_out = samples_of(start, bench_transfer.group_structures(element, group, workdir))
    in_domain = samples_of(start, bench_transfer.test_without_group(element, group, workdir))
    loss = PhysicallyInformedLoss(start, samples, {"forces": 0.01, "stress": 0.0}, args.tau,
                                  num_threads=1)
    theta, memory, done, begin = loss.pack(start), None, 0, time.perf_counter()
    rows = []

    def report(potential, seconds, terms):
        row = {"iterations": done, "seconds": seconds,
               "train_loss": None if terms is None else float(sum(terms.values())),
               "held_out": errors(potential, held_out), "in_domain": errors(potential, in_domain),
               "delta_p_rms_train": delta_p_rms(potential, samples),
               "delta_p_rms_held_out": delta_p_rms(potential, held_out)}
        rows.append(row)
        h, d = row["held_out"], row["in_domain"]
        print(f"{done:5d} it {seconds:6.0f} s  held-out {group} E {h[0]:6.2f} (signed {h[2]:+7.2f})"
              f" F {h[1]:.3f} | in domain E {d[0]:6.2f} F {d[1]:.3f}", flush=True)

    report(start, 0.0, None)
    while done < args.iterations:
        result = minimise(loss.value_and_gradient, theta, args.segment, 1e-10, memory=memory)
        theta, memory, done = result.x, result.memory, done + args.segment
        report(loss.unpack(theta), time.perf_counter() - begin, loss.terms(theta))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"element": element, "group": group, "tau": args.tau,
                       "max_shift": None if args.unbounded else model.get("max_shift"),
                       "clip_descriptor": bool(clip),
                       "functions": len(descriptor.functions), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
