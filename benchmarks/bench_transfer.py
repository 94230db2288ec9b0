"""Transferability of traditional, ML and physically-informed potentials on the mlearn Mo and
Si data (issue 20; the table in potentials/README.md).

For each family of potentials and element:
(a) test MAE of energy (meV/atom) and forces (eV/Å) on the mlearn test set;
(b) leave one group out: fitted without the ``Surface`` (then ``Vacancy``, then ``Elastic``)
    structures of the training set, the error on that group (its training and test structures
    together), and the fit's in-domain test error (the test set without the group);
(c) far field: the E-V curve of the ground-state crystal to +-30 % volume, the dimer and the
    equilateral-trimer curves (energies relative to isolated atoms); flags: monotonic
    repulsion (the energy falls all the way from the shortest distance to the minimum) and
    spurious minima (local minima beyond the first);
(d) cost per atom-step: ACECalculator energy and forces on a rattled crystal (128 Mo / 216 Si
    atoms), one thread, process CPU time, median of several runs of 10 steps;
(e) the number of fitted parameters (E0 not counted).

A family is an entry of FAMILIES: how to fit it from a training file (a config dict for
``ace.fit``; None: not refitted, so (b) is not run) and, optionally, a shipped potential used
for (a), (c), (d) and (e) instead of a fit on the full training set. Fits go to ``--workdir``
and are reused when present there with ``--reuse``. Never selects anything by a test set.

    python benchmarks/bench_transfer.py [--elements Mo Si] [--families eam bop ace-linear ...]
        [--groups Surface Vacancy Elastic] [--workdir /tmp/ace-transfer] [--reuse]
        [--restarts N] [--reuse-only] [--json results.json]
    python benchmarks/bench_transfer.py --tables a.json b.json   # merge earlier runs' tables
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import yaml
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import repeat_timing  # noqa: E402

ROOT = os.path.dirname(HERE)
POTENTIALS = os.path.join(ROOT, "potentials")
DATA = os.environ.get("ACE_MLEARN", os.path.join(ROOT, "..", "shared", "data", "mlearn"))
GROUPS = ("Surface", "Vacancy", "Elastic")
CRYSTALS = {"Mo": ("bcc", 3.1676, (4, 4, 4)), "Si": ("diamond", 5.4688, (3, 3, 3))}
VOLUME_SCALES = np.linspace(0.7, 1.3, 61)
DISTANCES = np.arange(1.0, 7.0001, 0.01)  # Å, dimer and trimer
FLAT = 1e-6  # eV: energy steps below this are flat (beyond a cutoff), not a turn


@dataclass
class Family:
    """name: key; label: table row; config(element, train_files, output) -> ace.fit config
    dict or None (not refitted); shipped(element) -> potential file or None;
    n_parameters(potential) -> fitted parameters, E0 excluded."""

    name: str
    label: str
    config: Callable
    shipped: Callable
    n_parameters: Callable


FAMILIES = {}


def register(family):
    FAMILIES[family.name] = family
    return family


def shipped_file(name):
    def find(element):
        path = os.path.join(POTENTIALS, name.format(element=element))
        return path if os.path.exists(path) else None
    return find


def config_from_file(name):
    """A fit config for a training file from a shipped config (the same settings)."""
    def make(element, train, output):
        path = os.path.join(POTENTIALS, name.format(element=element))
        with open(path) as fh:
            config = yaml.safe_load(fh)
        config["data"] = {"train": train}
        config["output"] = output
        config.setdefault("fit", {})["progress"] = False
        return config
    return make


def linear_ace_config(element, train, output):
    """The four-key default config (potentials/<element>.config.yaml); the committee and the
    active set are made after the fit and do not change it, so they are skipped."""
    config = config_from_file("{element}.config.yaml")(element, train, output)
    config["fit"].update({"committee": 0, "active_set": "none"})
    return config


def ace_parameters(potential):
    """Coefficients, and for a nonlinear fit (more than one density) the radial functions."""
    n = potential.coefficients.size
    if potential.ndensity_max > 1:
        n += sum(b.crad.size for b in potential.bonds.values())
    return int(n)


def traditional_parameters(potential):
    return int(potential.n_parameters)


for _form in ("eam", "bop"):
    register(Family(_form, f"traditional {_form.upper()}",
                    config_from_file("{element}-" + _form + ".config.yaml"),
                    shipped_file("{element}-" + _form + ".yaml"), traditional_parameters))
register(Family("ace-linear", "linear ACE (four-key default)", linear_ace_config,
                shipped_file("{element}.yaml"), ace_parameters))
register(Family("ace-nonlinear", "nonlinear ACE (shipped)", lambda *args: None,
                shipped_file("{element}-nonlinear.yaml"), ace_parameters))



def physically_informed_config(form):
    """potentials/<element>_pinn.config.yaml's settings on a training file, on top of the
    traditional ``form`` potential fitted to the same training file: the bench's own fit of
    that family (the same output name without "pinn-"), else the shipped one for the full
    training set, else fitted inline with the shipped traditional config's settings."""
    def make(element, train, output):
        config = config_from_file("{element}_pinn.config.yaml")(element, train, output)
        model = config["model"]
        traditional = output.replace(f"-pinn-{form}", f"-{form}")
        shipped = os.path.join(POTENTIALS, f"{element}-{form}.yaml")
        if os.path.exists(traditional):
            model["traditional"] = traditional
        elif train == os.path.join(DATA, element, "train.xyz") and os.path.exists(shipped):
            model["traditional"] = shipped
        else:
            with open(os.path.join(POTENTIALS, f"{element}-{form}.config.yaml")) as fh:
                source = yaml.safe_load(fh)["model"]
            model["traditional"] = {k: v for k, v in source.items()
                                    if k not in ("kind", "form", "cutoff")}
        return config
    return make


register(Family("pinn-bop", "physically-informed BOP", physically_informed_config("bop"),
                shipped_file("{element}_pinn.yaml"), traditional_parameters))


# ------------------------------------------------------------------------------- fitting

def fit(family, element, train, output, reuse, log, restarts=None):
    """The potential file of ``family`` fitted on ``train`` (``reuse``: an existing
    ``output``; "only": never fit, None when there is none)."""
    import ace
    if reuse and os.path.exists(output):
        log(f"  reusing {output}")
        return output
    if reuse == "only":
        log(f"  no {output}: not run")
        return None
    config = family.config(element, train, output)
    if config is None:
        return None
    if restarts is not None and "model" in config:
        # a traditional model's restarts, or those of a physically-informed model's inline
        # traditional fit
        model = config["model"]
        target = model if model.get("kind") == "traditional" else model.get("traditional")
        if isinstance(target, dict):
            target["restarts"] = restarts
    start = time.perf_counter()
    ace.fit(config, validate=False, num_threads=1, progress=False, log=lambda m: None)
    log(f"  fitted {output} in {time.perf_counter() - start:.0f} s")
    return output


def group_file(element, splits, group, keep_group, workdir):
    """A cached extxyz of the ``splits`` ("train", "test") of ``element`` holding only the
    structures of config_type ``group`` (``keep_group``) or all the others."""
    name = f"{element}-{'-'.join(splits)}-{'only' if keep_group else 'without'}-{group}.xyz"
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        images = [a for split in splits
                  for a in read(os.path.join(DATA, element, f"{split}.xyz"), ":")
                  if (a.info.get("config_type") == group) == keep_group]
        write(path, images)
    return path


def without_group(element, group, workdir):
    return group_file(element, ("train",), group, False, workdir)


def group_structures(element, group, workdir):
    """The group's training and test structures (the held-out set of leave-one-group-out)."""
    return group_file(element, ("train", "test"), group, True, workdir)


def test_without_group(element, group, workdir):
    return group_file(element, ("test",), group, False, workdir)


def errors(potential, data):
    import ace
    row = ace.evaluate(potential, data, num_threads=1)["overall"]
    return {"energy_mae": row["energy_mae"], "forces_mae": row["forces_mae"]}


# ------------------------------------------------------------------------------- far field

def curve_flags(x, energy):
    """Local minima (flat steps skipped) and whether the energy falls monotonically from the
    shortest x to the first minimum."""
    steps = np.diff(energy)
    signs = np.sign(np.where(np.abs(steps) < FLAT, 0.0, steps))
    signs = signs[signs != 0]
    minima = int(np.sum((signs[:-1] < 0) & (signs[1:] > 0)))
    first = int(np.argmax(signs > 0)) if (signs > 0).any() else len(signs)
    monotonic = bool((signs[:first] < 0).all()) and first > 0
    k = int(np.argmin(energy))
    return {"minima": minima, "monotonic_repulsion": monotonic,
            "minimum_x": float(x[k]), "minimum_energy": float(energy[k])}


def far_field(potential, element):
    from ace.calculator import ACECalculator
    calc = ACECalculator(potential, num_threads=1)

    def energy(atoms):
        atoms.calc = calc
        return atoms.get_potential_energy()

    free = energy(Atoms(element, positions=[[0, 0, 0]]))
    structure, a, _ = CRYSTALS[element]
    crystal = bulk(element, structure, a=a, cubic=True)
    e_v = []
    for scale in VOLUME_SCALES:
        atoms = crystal.copy()
        atoms.set_cell(crystal.cell * scale ** (1 / 3), scale_atoms=True)
        e_v.append(energy(atoms) / len(atoms) - free)
    dimer, trimer = [], []
    for r in DISTANCES:
        dimer.append(energy(Atoms(element * 2, positions=[[0, 0, 0], [0, 0, r]])) - 2 * free)
        trimer.append(energy(Atoms(element * 3, positions=[[0, 0, 0], [r, 0, 0],
                                                           [r / 2, r * np.sqrt(3) / 2, 0]]))
                      - 3 * free)
    e_v = np.array(e_v)
    return {"ev": {**curve_flags(VOLUME_SCALES, e_v),
                   "E(0.7 V0) - E(V0)": float(e_v[0] - e_v[30]),
                   "E(1.3 V0) - E(V0)": float(e_v[-1] - e_v[30])},
            "dimer": {**curve_flags(DISTANCES, np.array(dimer)), "E(1 Å)": float(dimer[0])},
            "trimer": {**curve_flags(DISTANCES, np.array(trimer)), "E(1 Å)": float(trimer[0])},
            "curves": {"volume_scale": VOLUME_SCALES.tolist(), "ev": e_v.tolist(),
                       "distance": DISTANCES.tolist(), "dimer": dimer, "trimer": trimer}}


def cost(potential, element, steps=10, repeats=5):
    """Microseconds of process CPU time per atom and step of energy + forces (one thread; CPU
    time rather than wall time: the machine is shared, and CPU time does not count the waits)."""
    from ace.calculator import ACECalculator
    structure, a, repeat = CRYSTALS[element]
    atoms = bulk(element, structure, a=a, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=0)
    atoms.calc = ACECalculator(potential, num_threads=1)
    rng = np.random.default_rng(0)

    def run():
        for _ in range(steps):
            atoms.positions += rng.normal(0, 0.002, atoms.positions.shape)
            atoms.get_forces()

    timing = repeat_timing(run, repeats=repeats, warmup=1)
    return timing.cpu_median / (steps * len(atoms)) * 1e6


# ------------------------------------------------------------------------------- table

def run(elements, families, groups, workdir, reuse, log, restarts=None):
    import ace
    os.makedirs(workdir, exist_ok=True)
    results = {}
    for element in elements:
        train = os.path.join(DATA, element, "train.xyz")
        test = os.path.join(DATA, element, "test.xyz")
        for name in families:
            family = FAMILIES[name]
            log(f"{element} {family.label}")
            row = {}
            path = family.shipped(element)
            if path is None:
                path = fit(family, element, train, os.path.join(workdir, f"{element}-{name}.yaml"),
                           reuse, log)
            if path is None:
                log(f"  no potential of {family.label} for {element}: skipped")
                continue
            potential = ace.load(path)
            row["potential"] = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
            row["test"] = errors(potential, test)
            row["n_parameters"] = family.n_parameters(potential)
            row["far_field"] = far_field(potential, element)
            row["cost_us_per_atom_step"] = cost(potential, element)
            row["held_out"] = {}
            for group in groups:
                output = os.path.join(workdir, f"{element}-{name}-without-{group}.yaml")
                fitted = fit(family, element, without_group(element, group, workdir), output,
                             reuse, log, restarts)
                if fitted is None:
                    continue  # not refitted (not run): the table says so
                held = ace.load(fitted)
                row["held_out"][group] = {
                    "group": errors(held, group_structures(element, group, workdir)),
                    "test_without_group": errors(held, test_without_group(element, group,
                                                                          workdir))}
            results.setdefault(element, {})[name] = row
            log(json.dumps({k: v for k, v in row.items() if k != "far_field"}, default=float))
    return results


def fmt(value, digits=3):
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown(results, families, groups):
    lines = []
    for element, rows in results.items():
        lines += [f"**{element}**", "",
                  "| family | params | test E / F | " + " | ".join(
                      f"without {g}: {g} E / F (test E)" for g in groups)
                  + " | E–V minima, E(0.7V0) | dimer: min (Å, eV), minima, monotonic | "
                    "trimer: minima, monotonic | µs/atom-step |",
                  "|---" * (7 + len(groups)) + "|"]
        for name in families:
            if name not in rows:
                continue
            r = rows[name]
            ff = r["far_field"]
            held = []
            for g in groups:
                h = r["held_out"].get(g)
                held.append("not run" if h is None else
                            f"{fmt(h['group']['energy_mae'])} / {fmt(h['group']['forces_mae'], 2)}"
                            f" ({fmt(h['test_without_group']['energy_mae'])})")
            lines.append(
                f"| {FAMILIES[name].label} | {r['n_parameters']} | "
                f"{fmt(r['test']['energy_mae'])} / {fmt(r['test']['forces_mae'], 2)} | "
                + " | ".join(held)
                + f" | {ff['ev']['minima']}, {fmt(ff['ev']['E(0.7 V0) - E(V0)'])} eV | "
                f"{ff['dimer']['minimum_x']:.2f}, {fmt(ff['dimer']['minimum_energy'])}; "
                f"{ff['dimer']['minima']}; {'yes' if ff['dimer']['monotonic_repulsion'] else 'no'} | "
                f"{ff['trimer']['minima']}; {'yes' if ff['trimer']['monotonic_repulsion'] else 'no'} | "
                f"{fmt(r['cost_us_per_atom_step'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", nargs="+", default=["Mo", "Si"])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--groups", nargs="*", default=list(GROUPS))
    parser.add_argument("--workdir", default="/tmp/ace-transfer")
    parser.add_argument("--reuse", action="store_true", help="reuse fits found in --workdir")
    parser.add_argument("--reuse-only", action="store_true",
                        help="reuse fits found in --workdir and fit nothing (missing "
                             "leave-one-group-out fits are reported as not run)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--restarts", type=int, default=None,
                        help="restarts of the leave-one-group-out refits of traditional "
                             "families (default: their config's)")
    parser.add_argument("--tables", nargs="+", default=None, metavar="JSON",
                        help="only print the table of earlier runs' --json files (merged)")
    args = parser.parse_args(argv)
    if args.tables:
        merged = {}
        for path in args.tables:
            with open(path) as fh:
                for element, rows in json.load(fh).items():
                    merged.setdefault(element, {}).update(rows)
        print(markdown(merged, [f for f in FAMILIES if any(f in r for r in merged.values())],
                       args.groups))
        return
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; registered: {list(FAMILIES)}")
    if not os.path.isdir(DATA):
        parser.error(f"the mlearn data are not at {DATA} (set ACE_MLEARN)")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    reuse = "only" if args.reuse_only else args.reuse
    results = run(args.elements, args.families, args.groups, args.workdir, reuse, log,
                  args.restarts)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
    print(markdown(results, args.families, args.groups))


if __name__ == "__main__":
    main()
