"""The whole fit of a config: data, basis, linear fit, optional nonlinear fit, error tables,
the potential with its provenance and the metrics JSON.

:func:`run_fit` is what ``ace fit`` and ``ace.fit`` do; :func:`estimate_fit` is ``--dry-run``
(the basis size and the memory the fit needs, and for a nonlinear fit the time it may take,
without fitting). A nonlinear fit writes the best
potential so far to the config's ``output`` as it goes and its state to
``<output>.checkpoint.json``; with the linear fit it started from stored in the checkpoint, so
that ``resume=True`` continues it without repeating (or having to reproduce) the linear fit.

Messages go to ``log`` (a callable taking one string), by default this module's logger at level
INFO; progress bars, and the nonlinear fit's lines at least every 10 s through ``log``, follow
``config.progress``. pacemaker's pickled datasets are read only when ``config.trust_pickle``.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from ace import __version__
from ace._core import effective_n_threads
from ace.basis import build_basis
from ace.data import read_dataset
from ace.fitting import progress_bar
from ace.fitting.config import ConfigError, apply_core_repulsion, default_basis_size
from ace.fitting.distributed import (ChunkedAssembly, InProcessEngine, chunked_error_table,
                                     open_engine, summarise)
from ace.fitting.linear import LinearFit, fit_linear, memory_estimate, structure_weights
from ace.fitting.metrics import error_table, evaluate, predict, to_json
from ace.fitting.nonlinear import (EXTENDABLE, CheckpointError, estimate_nonlinear_seconds,
                                   fit_nonlinear, linear_part, read_checkpoint_context,
                                   start_from_linear)
from ace.fitting.sanity import (check_fit_errors, check_outputs, check_threads,
                                check_training_set)
from ace.potential import ACEPotential
from ace.stream import StreamedDataset
from ace.uncertainty import build_active_set

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What a fit produced. ``tables``: the error tables by split ("train", and "test" when
    the config has test data; see :mod:`ace.fitting.metrics`); ``report``: the fit report
    (chosen weights and ridge, rank, timings; for a nonlinear fit its history and the linear
    fit's report under "linear"); ``output`` / ``metrics_path`` / ``checkpoint``: the files
    written (``checkpoint`` is None for a linear fit)."""

    potential: ACEPotential
    tables: dict
    report: dict
    output: str
    metrics_path: str
    checkpoint: str | None = None
    # the training data the fit read (for the validation that follows a fit)
    train: object = field(default=None, repr=False)
    # the fitted potential's predictions on it (ace.fitting.metrics.Predictions), reused by
    # the quick validation instead of evaluating the training set again
    train_predictions: object = field(default=None, repr=False)
    # <output>.active.yaml: the active set of the extrapolation grade (None: not written)
    active_set: str | None = None
    # the directory of the quick validation report ``ace.fit`` writes after the fit
    validation: str | None = None
    findings: list = field(default_factory=list)  # ace.fitting.sanity: flagged before the fit
    flagged: list = field(default_factory=list)  # ... and after it (an absurd training error)

    @property
    def paths(self):
        """The files the fit wrote."""
        return [p for p in (self.output, self.metrics_path, self.checkpoint, self.active_set,
                            self.validation) if p]

    def __repr__(self):
        return f"FitResult({self.potential!r}, splits {list(self.tables)}, output={self.output!r})"


@dataclass
class FitEstimate:
    """The basis a config gives on its data and the memory its fit needs (bytes per item of
    :func:`ace.fitting.linear.memory_estimate`); for a nonlinear fit the measured time of one
    loss-and-gradient evaluation and an upper estimate of the whole nonlinear stage (seconds,
    every run using all its iterations); what ``ace fit --dry-run`` prints."""

    n_functions: int
    counts: dict  # {element: {correlation order: functions}}
    memory: dict
    basis: dict = field(repr=False)  # the pacemaker-format basis dict, sizes filled in
    core_repulsion: dict | None = None
    n_train: int = 0
    n_test: int = 0
    nonlinear_seconds_per_evaluation: float | None = None
    nonlinear_seconds: float | None = None


def _logger(log):
    return logger.info if log is None else log


def _warn(findings, log):
    """The findings of ace.fitting.sanity: to ``log`` as "warning: ..." lines, or the logger at
    level WARNING."""
    for finding in findings:
        if log is None:
            logger.warning("%s", finding)
        else:
            log(f"warning: {finding}")


def load_data(config, log=None, engine=None):
    """Read the training and test sets (test None if the config has none) and check them
    against the elements. With ``config.stream`` they are :class:`StreamedDataset` objects, whose
    chunks are summarised on ``engine`` (default: in this process)."""
    log = _logger(log)

    def read(sources):
        if not config.stream:
            return read_dataset(sources, config.keys, trust_pickle=config.trust_pickle)
        data = StreamedDataset.open(sources, config.keys, config.chunk_structures,
                                    cutoff=config.cutoff,
                                    map=summarise(engine or InProcessEngine()))
        data.warn_duplicates()
        return data

    train = read(config.train)
    train.check_elements(config.elements)
    log(f"train: {train}")
    test = None
    if config.test:
        test = read(config.test)
        test.check_elements(config.elements)
        log(f"test:  {test}")
    return train, test


def fit_engine(config, log=None):
    """The engine the chunk passes of ``config`` run on (a context manager): Dask with
    ``fit.engine: dask``, else this process."""
    if config.engine.engine == "dask":
        return open_engine(config.engine, log=_logger(log))
    return InProcessEngine()


def assembly_dir(config):
    """Where a streamed fit keeps the running sums of its normal equations for resuming:
    ``<output>.assembly/`` (removed when the fit has written its potential)."""
    return os.path.splitext(config.output)[0] + ".assembly"


def build_potential(config, train, log=None):
    """The basis (sized for the data when asked) and an unfitted potential on it:
    (potential, info) with info the basis dict, counts, core repulsion and automatic size."""
    log = _logger(log)
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


def estimate_fit(config, log=None):
    """Read the data and build the basis of ``config`` (a :class:`FitConfig`) without fitting:
    a :class:`FitEstimate`. A nonlinear config's time is estimated from a few loss-and-gradient
    evaluations on the training set."""
    check_threads(config)
    train, test = load_data(config, log)
    _warn(check_training_set(config, train, config.num_threads), log)
    potential, info = build_potential(config, train, log)
    n_terms = 2 + int(train.has_stress.any())
    # streamed, the client holds one chunk at a time
    held_atoms = (int(np.add.reduceat(train.n_atoms, train.starts[:-1]).max())
                  if isinstance(train, StreamedDataset) else train.total_atoms)
    memory = memory_estimate(
        potential.n_functions + (len(config.elements) if config.loss.e0 == "auto" else 0),
        n_terms, config.loss.n_parts(len(train)), config.chunk_rows, int(train.n_atoms.max()),
        potential.n_functions, effective_n_threads(config.num_threads), held_atoms)
    per_evaluation = nonlinear_total = None
    if config.nonlinear is not None:
        per_evaluation, nonlinear_total = estimate_nonlinear_seconds(
            potential, train, config.nonlinear, config.num_threads)
    return FitEstimate(n_functions=potential.n_functions,
                       counts={el: dict(sorted(c.items())) for el, c in info["counts"].items()},
                       memory=memory, basis=info["basis"], core_repulsion=info["core_repulsion"],
                       n_train=len(train), n_test=0 if test is None else len(test),
                       nonlinear_seconds_per_evaluation=per_evaluation,
                       nonlinear_seconds=nonlinear_total)


def run_fit(config, resume=False, log=None, strict=False):
    """Fit ``config`` (a :class:`FitConfig`): read the data, build the basis, fit, evaluate,
    write the potential (fit settings, report and error tables in its metadata) and the
    metrics JSON. ``resume`` continues an interrupted (or finished, with a larger
    max_iterations or patience) nonlinear fit from its checkpoint. A :class:`FitResult`.

    Before any work the output, metrics and checkpoint paths must be writable; an unfittable
    training set is refused (ConfigError) and doubtful data are flagged as warnings
    (:mod:`ace.fitting.sanity`), which ``strict`` turns into a ConfigError before the fit. An
    absurd training error is flagged after it (``FitResult.flagged``)."""
    if resume and config.nonlinear is None:
        raise ConfigError("resuming (--resume, resume=True) applies to fit.method nonlinear only")
    check_threads(config)
    check_outputs(config)  # before any work, not after the fit
    with fit_engine(config, log) as engine:
        train, test = load_data(config, log, engine)
        findings = check_training_set(config, train, config.num_threads)
        _warn(findings, log)
        if strict and findings:
            raise ConfigError(f"strict: {len(findings)} problem(s) in the training data "
                              "(warnings above); not fitting")
        potential, info = build_potential(config, train, log)
        result = fit_config(config, train, test, potential, info, resume=resume, log=log,
                            engine=engine)
    result.findings = findings
    result.flagged = check_fit_errors(result.tables, train)
    _warn(result.flagged, log)
    return result


def fit_config(config, train, test, potential, info, resume=False, log=None, engine=None):
    """The fit of :func:`run_fit` on data already read and a potential already built by
    :func:`build_potential` (``info`` its second result). With ``config.stream`` the design
    rows and the error tables are passes over the chunks on ``engine`` (default: in this
    process), resuming an interrupted assembly from :func:`assembly_dir`."""
    log = _logger(log)
    progress = progress_bar(config.progress)
    start = time.perf_counter()
    engine = engine or InProcessEngine()
    assemble = (ChunkedAssembly(engine, assembly_dir(config), log=log,
                                chunk_structures=config.chunk_structures)
                if config.stream else None)

    def evaluate_on(potential, data):
        if config.stream:
            return chunked_error_table(potential, data, engine, config.num_threads, progress,
                                       config.chunk_structures)
        return evaluate(potential, data, config.num_threads, progress)

    if resume:
        result = linear_fit_from_checkpoint(config)
        done = "resuming: the linear fit is the checkpoint's"
    else:
        result = fit_linear(linear_part(potential), train, config.loss,
                            num_threads=config.num_threads, chunk_rows=config.chunk_rows,
                            progress=progress, log=log,
                            committee=config.committee if config.nonlinear is None else 0,
                            assemble=assemble)
        done = f"linear fit took {time.perf_counter() - start:.1f} s"
    log(f"{done}; E0: " + ", ".join(f"{el} {v:.4f} eV" for el, v in result.report["e0"].items())
        + (f" ({result.report['e0_source']})" if "e0_source" in result.report else ""))
    if config.nonlinear is not None:
        result = fit_nonlinear_from_linear(config, train, potential, result, resume, log)
        log(f"nonlinear fit took {result.report['seconds']:.1f} s")
    if assemble is not None:
        stats = assemble.stats
        log(f"normal equations: {stats['chunks']} chunks on {stats['engine']} "
            f"({stats['resumed']} resumed), {stats['seconds']:.1f} s; "
            f"{stats['result_bytes'] / 2**20:.2f} MiB per chunk result")
    fitted = result.potential
    train_predictions = None
    if config.stream:
        tables = {"train": evaluate_on(fitted, train)}
    else:
        train_predictions = predict(fitted, train, config.num_threads, progress)
        tables = {"train": error_table(train, train_predictions)}
    if test is not None:
        tables["test"] = evaluate_on(fitted, test)
    tables = plain(tables)
    fitted.metadata = plain({
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ace_version": __version__,
        "fit": {"config": config.to_dict(), "basis": info["basis"],
                "core_repulsion": info["core_repulsion"], "report": result.report},
        "metrics": tables,
    })
    fitted.save(config.output)
    to_json(tables, config.metrics_path)
    with contextlib.suppress(FileNotFoundError):  # the fit is done: nothing to resume
        shutil.rmtree(assembly_dir(config))
    active = write_active_set(config, fitted, train, log)
    return FitResult(potential=fitted, tables=tables, report=fitted.metadata["fit"]["report"],
                     output=config.output, metrics_path=config.metrics_path,
                     checkpoint=checkpoint_path(config) if config.nonlinear is not None else None,
                     train=train, train_predictions=train_predictions, active_set=active)


def active_set_path(config):
    return os.path.splitext(config.output)[0] + ".active.yaml"


def write_active_set(config, potential, train, log):
    """The active set of the extrapolation grade of ``potential`` on its training data, saved
    beside it (``ACECalculator(potential, active_set=...)``, ``ace export --active-set``); its
    path, or None when ``fit.active_set`` is none or the data cannot determine one (fewer
    training atoms of an element than functions: said in the log)."""
    if config.active_set == "none":
        return None
    try:
        active = build_active_set(potential, train, mode=config.active_set,
                                  num_threads=config.num_threads)
    except ValueError as exc:  # too few training atoms of an element for its functions
        log(f"no active set written: {exc}")
        return None
    path = active_set_path(config)
    active.save(path)
    log(f"active set ({config.active_set} mode) for the extrapolation grade: {path}")
    return path


def checkpoint_path(config):
    """Where the nonlinear fit of ``config`` keeps its state: ``<output>.checkpoint.json``."""
    return os.path.splitext(config.output)[0] + ".checkpoint.json"


def resumable_settings(config):
    """The config's settings that a resumed fit must share with the interrupted one: not the
    thread count, chunk size or progress output, which do not change the result's meaning, nor
    the stopping rules, which may be raised to continue a fit that ran out of iterations."""
    settings = plain(config.to_dict())
    # the committee and the active set are made after the fit and do not change it
    for key in ("num_threads", "chunk_rows", "committee", "active_set", "stream",
                "chunk_structures", "engine"):
        settings.pop(key, None)
    for key in EXTENDABLE:
        (settings["nonlinear"] or {}).pop(key, None)
    return settings


def linear_fit_from_checkpoint(config):
    """The linear fit an interrupted nonlinear fit started from, as stored in its checkpoint,
    so that resuming neither repeats it nor depends on it being reproduced bit for bit."""
    path = checkpoint_path(config)
    context = read_checkpoint_context(path)
    if not isinstance(context, dict) or not {"settings", "linear"} <= set(context):
        raise CheckpointError(f"{path}: the checkpoint does not hold the linear fit it started "
                              "from; fit without resuming")
    if context["settings"] != resumable_settings(config):
        raise ConfigError(f"{path}: the config has changed since the checkpoint was written; "
                          "fit without resuming to start over")
    linear = context["linear"]
    return LinearFit(ACEPotential.from_dict(linear["potential"]), linear["report"],
                     np.asarray(linear["penalty"], dtype=float))


def fit_nonlinear_from_linear(config, train, potential, linear, resume, log=None):
    """The nonlinear fit from the linear solution, with the linear fit's structure weights,
    term weights and ridge penalty; the best potential so far is saved to the output as the
    fit goes. With ``config.progress`` the fit reports through ``log`` at least every 10 s."""
    log = _logger(log)
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
