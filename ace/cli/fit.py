"""Fit a linear ACE potential from a YAML config.

The config needs only `elements`, `cutoff`, `data: {train, test}` and `output`; every other
key is documented in ace/fitting/config.py. Prints the basis, the chosen weights and
regularisation, the error tables for train and test, and writes the potential (with the fit
settings and metrics in its metadata) and a metrics JSON beside it (<output>.metrics.json).
`--dry-run` stops after reading the data and building the basis and prints the basis size and
the memory the fit will need.
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
    parser.add_argument("--resume", action="store_true",
                        help="nonlinear fit: continue from <output>.checkpoint.json (the "
                             "config unchanged, or with a larger max_iterations or patience "
                             "to continue a finished fit)")
    parser.add_argument("--strict", action="store_true",
                        help="flagged training data (energy outliers, conflicting duplicates, "
                             "implausible distances) stop the fit; an absurd training error "
                             "gives exit status 3 (see ace/fitting/sanity.py)")


def run(args):
    from ace.cli import fail
    from ace.data import DataError
    from ace.fitting import sanity
    from ace.fitting.config import ConfigError, FitConfig

    strict = getattr(args, "strict", False)
    try:
        config = FitConfig.load(args.config)
        if args.num_threads is not None:
            config.num_threads = args.num_threads
        if args.no_progress:
            config.progress = False
        sanity.check_threads(config)
        sanity.check_outputs(config)  # before any work, not after the fit
        train, test = load_data(config)
        findings = sanity.check_training_set(config, train, config.num_threads)
        sanity.report(findings)
        if strict and findings:
            raise ConfigError(f"--strict: {len(findings)} problem(s) in the training data "
                              "(warnings above); not fitting")
        potential, basis_info = build_potential(config, train)
        if args.dry_run:
            print_dry_run(config, train, potential, basis_info)
            return 0
        if args.resume and config.nonlinear is None:
            raise ConfigError("--resume applies to fit.method nonlinear only")
        potential, tables = fit_config(config, train, test, potential, basis_info,
                                       resume=args.resume)
        after = sanity.check_fit_errors(tables, train)
        sanity.report(after)
    except KeyboardInterrupt:
        return fail("fit", "interrupted" + (
            f"; the best potential so far is in {config.output}; continue with --resume"
            if config.nonlinear is not None else ""))
    except (ConfigError, DataError, ValueError, OSError) as exc:
        return fail("fit", str(exc))
    print(f"wrote {config.output} and {config.metrics_path}")
    if strict and after:
        return fail("fit", f"--strict: the fit was flagged ({len(after)} warning(s) above)",
                    status=sanity.STRICT_EXIT_STATUS)
    return 0


def log(message):
    print(message, flush=True)


def load_data(config):
    """Read the training and test sets and check them against the elements."""
    from ace.data import read_dataset

    train = read_dataset(config.train, config.keys)
    train.check_elements(config.elements)
    log(f"train: {train}")
    test = None
    if config.test:
        test = read_dataset(config.test, config.keys)
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
