"""Fit an ACE potential (linear, or nonlinear with fit.method: nonlinear) from a YAML config.

The config needs only `elements`, `cutoff`, `data: {train, test}` and `output`; every other
key is documented in ace/fitting/config.py (`ace init` writes them all with their defaults).
pacemaker's input.yaml is read too, each key it has and ace ignores named with the reason. Prints the basis, the chosen weights and
regularisation, the error tables for train and test, and writes the potential (with the fit
settings and metrics in its metadata) and a metrics JSON beside it (<output>.metrics.json).
`--dry-run` stops after reading the data and building the basis and prints the basis size,
the memory the fit will need and, for a nonlinear fit, an estimate of its time.
"""
from __future__ import annotations

import datetime
import json
import os
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("config", help="fit configuration (YAML)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the basis size and the memory the fit needs, then stop")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="OpenMP threads (default: fit.num_threads, else OMP_NUM_THREADS)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output (bars or periodic lines on stderr)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read pacemaker's pickled datasets (*.pckl.gzip; a pickle can "
                             "run code when loaded: only for files you trust)")
    parser.add_argument("--resume", action="store_true",
                        help="nonlinear fit: continue from <output>.checkpoint.json (the "
                             "config unchanged, or with a larger max_iterations or patience "
                             "to continue a finished fit)")


def run(args):
    from ace.cli import fail
    from ace.data import DataError
    from ace.fitting.config import ConfigError, FitConfig

    try:
        config = FitConfig.load(args.config, trust_pickle=args.trust_pickle)
        if args.num_threads is not None:
            config.num_threads = args.num_threads
        if args.no_progress:
            config.progress = False
        train, test = load_data(config)
        potential, basis_info = build_potential(config, train)
        if args.dry_run:
            print_dry_run(config, train, potential, basis_info)
            return 0
        if args.resume and config.nonlinear is None:
            raise ConfigError("--resume applies to fit.method nonlinear only")
        potential, tables = fit_config(config, train, test, potential, basis_info,
                                       resume=args.resume)
    except KeyboardInterrupt:
        return fail("fit", "interrupted" + (
            f"; the best potential so far is in {config.output}; continue with --resume"
            if config.nonlinear is not None else ""))
    except (ConfigError, DataError, ValueError, OSError) as exc:
        return fail("fit", str(exc))
    print(f"wrote {config.output} and {config.metrics_path}")
    return 0


def log(message):
    print(message, flush=True)


def load_data(config):
    """Read the training and test sets and check them against the elements."""
    from ace.data import read_dataset

    train = read_dataset(config.train, config.keys, trust_pickle=config.trust_pickle)
    train.check_elements(config.elements)
    log(f"train: {train}")
    test = None
    if config.test:
        test = read_dataset(config.test, config.keys, trust_pickle=config.trust_pickle)
        test.check_elements(config.elements)
        log(f"test:  {test}")
    return train, test


def build_potential(config, train):
    """The basis (sized for the data when asked) and an unfitted potential on it."""
    from ace.basis import build_basis
    from ace.fitting.config import apply_core_repulsion, default_basis_size
    from ace.potential import ACEPotential

    n_functions = None
    if config.wants_auto_size():
        n_functions = default_basis_size(train, len(config.elements))
    basis_dict, core = apply_core_repulsion(config.basis_dict(n_functions), config.core_repulsion,
                                            train, config.cutoff, config.num_threads)
    basis = build_basis(basis_dict)
    info = {"basis": basis_dict, "counts": basis.counts(), "core_repulsion": core,
            "auto_size": n_functions}
    log(f"basis: {basis.n_functions} functions "
        + ", ".join(f"{el}: {dict(c)}" for el, c in basis.counts().items())
        + (f" (size from the data: {n_functions} per element)" if n_functions else ""))
    if core:
        log(f"core repulsion: ZBL below r_in = {core['r_in']:.3f} Å "
            f"(blend width {core['delta_in']:.2f} Å)")
    return ACEPotential.from_basis(basis), info


def print_dry_run(config, train, potential, info):
    from ace.fitting.linear import memory_estimate

    n_terms = 2 + int(train.has_stress.any())
    estimate = memory_estimate(
        potential.n_functions + (len(config.elements) if config.loss.e0 == "auto" else 0),
        n_terms, config.loss.n_parts(len(train)), config.chunk_rows, int(train.n_atoms.max()),
        potential.n_functions, _threads(config), train.total_atoms)
    print(f"basis size: {potential.n_functions} functions")
    for element, counts in info["counts"].items():
        print(f"  {element}: " + ", ".join(f"order {k}: {n}" for k, n in sorted(counts.items())))
    print("memory needed by the fit (approximate):")
    for key, value in estimate.items():
        print(f"  {key:<17} {value / 2**20:10.1f} MiB")
    if config.nonlinear is not None:
        from ace.fitting.heartbeat import estimate_nonlinear_seconds
        per_evaluation, total = estimate_nonlinear_seconds(potential, train, config.nonlinear,
                                                           config.num_threads)
        s = config.nonlinear
        print(f"nonlinear stage: {per_evaluation:.3g} s per loss and gradient evaluation on the "
              f"{len(train)} training structures; {s.max_iterations} iterations x {s.restarts} "
              f"restart(s) take at most about {total:.0f} s ({total / 60:.1f} min; less if it "
              f"converges or stops early)")


def _threads(config):
    from ace._core import effective_n_threads
    return effective_n_threads(config.num_threads)


def fit_config(config, train, test, potential, info, resume=False):
    """Fit, evaluate, write the potential and metrics; returns (potential, tables)."""
    from ace.fitting import progress_bar
    from ace.fitting.linear import fit_linear
    from ace.fitting.metrics import evaluate, format_table, to_json
    from ace.fitting.nonlinear import linear_part

    progress = progress_bar(config.progress)
    start = time.perf_counter()
    if resume:
        result = linear_fit_from_checkpoint(config)
        done = "resuming: the linear fit is the checkpoint's"
    else:
        result = fit_linear(linear_part(potential), train, config.loss,
                            num_threads=config.num_threads, chunk_rows=config.chunk_rows,
                            progress=progress, log=log)
        done = f"linear fit took {time.perf_counter() - start:.1f} s"
    log(f"{done}; E0: " + ", ".join(f"{el} {v:.4f} eV" for el, v in result.report["e0"].items()))
    if config.nonlinear is not None:
        result = fit_nonlinear_from_linear(config, train, potential, result, resume)
        log(f"nonlinear fit took {result.report['seconds']:.1f} s")
    fitted = result.potential
    tables = {"train": evaluate(fitted, train, config.num_threads, progress)}
    if test is not None:
        tables["test"] = evaluate(fitted, test, config.num_threads, progress)
    for name, table in tables.items():
        print()
        print(format_table(table, f"{name} errors"))
    print()
    fitted.metadata = plain({
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ace_version": _version(),
        "fit": {"config": config.to_dict(), "basis": info["basis"],
                "core_repulsion": info["core_repulsion"], "report": result.report},
        "metrics": tables,
    })
    fitted.save(config.output)
    to_json(plain(tables), config.metrics_path)
    return fitted, tables


def checkpoint_path(config):
    return os.path.splitext(config.output)[0] + ".checkpoint.json"


def resumable_settings(config):
    """The config's settings that a resumed fit must share with the interrupted one: not the
    thread count, chunk size or progress output, which do not change the result's meaning, nor
    the stopping rules, which may be raised to continue a fit that ran out of iterations."""
    from ace.fitting.nonlinear import EXTENDABLE

    settings = plain(config.to_dict())
    for key in ("num_threads", "chunk_rows"):
        settings.pop(key, None)
    for key in EXTENDABLE:
        (settings["nonlinear"] or {}).pop(key, None)
    return settings


def linear_fit_from_checkpoint(config):
    """The linear fit an interrupted nonlinear fit started from, as stored in its checkpoint,
    so that resuming neither repeats it nor depends on it being reproduced bit for bit."""
    from ace.fitting.config import ConfigError
    from ace.fitting.linear import LinearFit
    from ace.fitting.nonlinear import CheckpointError, read_checkpoint_context
    from ace.potential import ACEPotential

    path = checkpoint_path(config)
    context = read_checkpoint_context(path)
    if not isinstance(context, dict) or not {"settings", "linear"} <= set(context):
        raise CheckpointError(f"{path}: the checkpoint does not hold the linear fit it started "
                              "from; fit without --resume")
    if context["settings"] != resumable_settings(config):
        raise ConfigError(f"{path}: the config has changed since the checkpoint was written; "
                          "fit without --resume to start over")
    linear = context["linear"]
    return LinearFit(ACEPotential.from_dict(linear["potential"]), linear["report"],
                     np.asarray(linear["penalty"], dtype=float))


def fit_nonlinear_from_linear(config, train, potential, linear, resume):
    """The nonlinear fit from the linear solution, with the linear fit's structure weights,
    term weights and ridge penalty."""
    from ace.fitting.linear import structure_weights
    from ace.fitting.nonlinear import fit_nonlinear, start_from_linear

    start = start_from_linear(potential, linear.potential, config.nonlinear.seed)
    weights = structure_weights(train, config.loss, potential.elements)

    def save_best(best):
        best.metadata = {"note": "best potential so far of an unfinished nonlinear fit"}
        best.save(config.output)

    result = fit_nonlinear(start, train, config.nonlinear, weights=weights,
                           tau={k: linear.report["weights"][k] for k in ("forces", "stress")},
                           penalty=linear.penalty, num_threads=config.num_threads,
                           checkpoint=checkpoint_path(config), resume=resume,
                           save_best=save_best, log=log,
                           progress=log if config.progress else None,
                           context={"settings": resumable_settings(config),
                                    "linear": {"potential": linear.potential.to_dict(),
                                               "report": plain(linear.report),
                                               "penalty": linear.penalty.tolist()}})
    result.report["linear"] = linear.report
    return result


def _version():
    from ace import __version__
    return __version__


def plain(obj):
    """A copy with numpy scalars and arrays turned into Python numbers and lists (YAML-safe)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in the potential metadata")
