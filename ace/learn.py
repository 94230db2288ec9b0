"""Active learning: grow a training set where the potential extrapolates.

Each iteration runs Langevin MD (ASE) from the seed structures at every configured temperature
with the current potential and its active set, keeps the frames whose max gamma exceeds
``gamma_threshold`` (a run stops early above ``gamma_stop``), picks the ``select`` frames that
extend the active set most (``ace.uncertainty.select_structures``), labels them with the
reference calculator (any ASE calculator, named ``module:attribute`` and called with
``reference_args``), adds them to the training set and refits the potential's basis linearly.

Everything an iteration produces is written before the state file moves on
(``OUTPUT/state.json``), atomically, so an interrupted run resumes at the iteration it was in:

    OUTPUT/train.xyz                 all labelled structures so far
    OUTPUT/iteration_K/potential.yaml, active.yaml, picked.xyz
    OUTPUT/state.json                {"iteration": K, "n_train": ..., "history": [...]}

Configuration (YAML, keys below; paths relative to the file):

    potential: start.yaml       # its basis (and embedding) is refitted every iteration
    reference: ase.calculators.emt:EMT
    reference_args: {}
    seeds: seeds.xyz            # MD starting points; labelled as the first training set
    test: test.xyz              # optional labelled test set: errors printed per iteration
    output: learn
    iterations: 3
    select: 4
    gamma_threshold: 2.0
    gamma_stop: 25.0
    md: {temperatures: [300, 1500], steps: 200, timestep: 2.0, interval: 10, friction: 0.02}
    loss: {forces: 1.0, stress: 0.0, l2: auto, method: gcv}   # ace.fitting.LossSettings
    seed: 0
"""
from __future__ import annotations

import importlib
import json
import os

import numpy as np
import yaml

from ace.potential import write_atomic

DEFAULT_MD = {"temperatures": [300.0], "steps": 200, "timestep": 2.0, "interval": 10,
              "friction": 0.02}
KEYS = {"potential", "reference", "reference_args", "seeds", "test", "output", "iterations",
        "select", "gamma_threshold", "gamma_stop", "md", "loss", "seed"}


class LearnConfigError(ValueError):
    """The active-learning configuration is invalid."""


def load_config(path):
    path = os.fspath(path)
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict):
        raise LearnConfigError(f"{path}: the configuration must be a mapping")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise LearnConfigError(f"{path}: unknown key(s) {unknown} (known: {sorted(KEYS)})")
    for key in ("potential", "reference", "seeds"):
        if key not in raw:
            raise LearnConfigError(f"{path}: missing key '{key}'")
    base = os.path.dirname(os.path.abspath(path))
    config = {"reference_args": {}, "test": None, "output": "learn", "iterations": 3,
              "select": 4, "gamma_threshold": 2.0, "gamma_stop": 25.0, "loss": {}, "seed": 0,
              **raw}
    for key in ("potential", "seeds", "test", "output"):
        if config[key] is not None:
            config[key] = os.path.join(base, os.path.expanduser(str(config[key])))
    config["md"] = {**DEFAULT_MD, **(raw.get("md") or {})}
    unknown_md = sorted(set(config["md"]) - set(DEFAULT_MD))
    if unknown_md:
        raise LearnConfigError(f"{path}: md: unknown key(s) {unknown_md}")
    for key in ("iterations", "select"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise LearnConfigError(f"{path}: {key} must be a whole number >= 1")
    reference_factory(config["reference"])  # a bad name fails here, before any work
    return config


def reference_factory(name):
    """The callable named ``module:attribute`` (an ASE calculator class or factory)."""
    module_name, _, attribute = str(name).partition(":")
    if not module_name or not attribute:
        raise LearnConfigError(f"reference '{name}': expected 'module:attribute', e.g. "
                               "'ase.calculators.emt:EMT'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LearnConfigError(f"reference '{name}': {exc}") from exc
    if not callable(factory):
        raise LearnConfigError(f"reference '{name}' is not callable")
    return factory


def label(images, config):
    """Copies of ``images`` with the reference's energy, forces (and stress if periodic)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    calc = reference_factory(config["reference"])(**config["reference_args"])
    out = []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = calc
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


def explore(potential, active_set, seeds, config, rng, log):
    """MD frames whose max gamma exceeds the threshold, and the largest max gamma seen."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from ace.calculator import ACECalculator
    from ace.uncertainty import ExtrapolationError

    md = config["md"]
    frames, largest = [], 0.0
    for temperature in md["temperatures"]:
        for atoms in seeds:
            atoms = atoms.copy()
            calc = ACECalculator(potential, num_threads=1, active_set=active_set,
                                 gamma_warning=None, gamma_stop=config["gamma_stop"],
                                 uncertainty_interval=int(md["interval"]))
            atoms.calc = calc
            thermalize_momenta(atoms, temperature_K=temperature,
                               rng=np.random.default_rng(rng.integers(2**31)))
            dynamics = Langevin(atoms, md["timestep"] * units.fs, temperature_K=temperature,
                                friction=md["friction"], fixcm=False,
                                rng=np.random.default_rng(rng.integers(2**31)))

            def record():
                gamma = calc.get_property("max_gamma", atoms)
                if gamma > config["gamma_threshold"]:
                    frame = atoms.copy()
                    frame.calc = None
                    frames.append(frame)
                return gamma

            try:
                for _ in range(0, int(md["steps"]), int(md["interval"])):
                    dynamics.run(int(md["interval"]))
                    largest = max(largest, record())
            except ExtrapolationError:
                frame = atoms.copy()
                frame.calc = None
                frames.append(frame)
                largest = max(largest, calc.results.get("max_gamma", config["gamma_stop"]))
                log(f"  MD at {temperature:g} K stopped: gamma above {config['gamma_stop']:g}")
    return frames, largest


def refit(potential, train_images, config):
    from ace.data import Dataset
    from ace.fitting.linear import LossSettings, fit_linear
    from ace.fitting.nonlinear import linear_part
    from ace.uncertainty import build_active_set

    fit = fit_linear(linear_part(potential), Dataset.from_atoms(train_images),
                     LossSettings(**config["loss"]), num_threads=1)
    return fit.potential, build_active_set(fit.potential, train_images)


def errors_on_test_set(potential, config):
    if not config["test"]:
        return None
    from ace.data import read_dataset
    from ace.fitting.metrics import evaluate
    row = evaluate(potential, read_dataset(config["test"]), 1)["overall"]
    return {"energy_rmse": row.get("energy_rmse"), "forces_rmse": row.get("forces_rmse")}


def write_images(path, images):
    """Extended XYZ, written atomically."""
    import io

    import ase.io
    buffer = io.StringIO()
    ase.io.write(buffer, images, format="extxyz")
    write_atomic(path, buffer.getvalue())


def learn(config, log=print):
    """Run (or resume) the loop of ``config`` (from load_config); returns the history."""
    import ase.io

    from ace.calculator import load_potential
    from ace.uncertainty import ActiveSet, select_structures

    output = config["output"]
    os.makedirs(output, exist_ok=True)
    state_path = os.path.join(output, "state.json")
    train_path = os.path.join(output, "train.xyz")
    seeds = ase.io.read(config["seeds"], ":")
    state = None
    if os.path.exists(state_path):
        with open(state_path) as fh:
            state = json.load(fh)
    if state is None:
        train = label(seeds, config)
        potential, active_set = refit(load_potential(config["potential"]), train, config)
        _save_iteration(output, 0, potential, active_set, [])
        write_images(train_path, train)
        state = {"iteration": 0, "n_train": len(train), "history": [
            {"iteration": 0, "labelled": len(train), "max_gamma": None,
             "test": errors_on_test_set(potential, config)}]}
        write_atomic(state_path, json.dumps(state, indent=1))
        log(f"iteration 0: {len(train)} labelled seeds, test {state['history'][-1]['test']}")
    else:
        log(f"resuming after iteration {state['iteration']} ({output})")
    directory = os.path.join(output, f"iteration_{state['iteration']}")
    from ace.potential import ACEPotential
    potential = ACEPotential.load(os.path.join(directory, "potential.yaml"))
    active_set = ActiveSet.load(os.path.join(directory, "active.yaml"))
    # train.xyz may hold the labels of an iteration interrupted before its state was written
    train = ase.io.read(train_path, ":")[:state["n_train"]]
    for k in range(state["iteration"] + 1, config["iterations"] + 1):
        rng = np.random.default_rng([config["seed"], k])
        frames, largest = explore(potential, active_set, seeds, config, rng, log)
        picked = select_structures(potential, active_set, frames, config["select"]) if frames \
            else []
        new = label([frames[i] for i, _ in picked], config)
        train = train + new
        if new:
            potential, active_set = refit(potential, train, config)
        _save_iteration(output, k, potential, active_set, new)
        write_images(train_path, train)
        entry = {"iteration": k, "labelled": len(new), "candidates": len(frames),
                 "max_gamma": largest, "test": errors_on_test_set(potential, config)}
        state = {"iteration": k, "n_train": len(train), "history": state["history"] + [entry]}
        write_atomic(state_path, json.dumps(state, indent=1))
        log(f"iteration {k}: {len(frames)} frames above gamma {config['gamma_threshold']:g}, "
            f"labelled {len(new)} (training set {len(train)}), max gamma seen {largest:.3g}, "
            f"test {entry['test']}")
    return state["history"]


def _save_iteration(output, k, potential, active_set, picked):
    directory = os.path.join(output, f"iteration_{k}")
    os.makedirs(directory, exist_ok=True)
    potential.save(os.path.join(directory, "potential.yaml"))
    active_set.save(os.path.join(directory, "active.yaml"))
    write_images(os.path.join(directory, "picked.xyz"), picked)
