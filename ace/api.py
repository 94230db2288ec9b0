"""The library's functions, one per job of the ``ace`` command (re-exported as ``ace.fit``,
``ace.evaluate``, ...; the command line only parses arguments and calls these):

* :func:`fit` -- fit a config (``ace fit``), :func:`estimate_fit` -- its basis size and memory
  without fitting (``ace fit --dry-run``);
* :func:`evaluate` -- error tables of a potential on data (``ace evaluate``);
* :func:`load` -- a potential from any supported file, :func:`export` -- write it to PACE
  (``ace export``, ``ace convert``; ``potential.save(path)`` writes ace's own format);
* :func:`describe` -- a summary of a potential (``ace info``).

Errors are exceptions: :class:`ace.fitting.config.ConfigError`, :class:`ace.data.DataError`
and other ``ValueError``\\ s for bad input, ``OSError`` for files.
"""
from __future__ import annotations

import dataclasses
import os

from ase import Atoms

from ace.data import Dataset, DataKeys, read_dataset
from ace.fitting import progress_bar
from ace.fitting.config import FitConfig
from ace.fitting.linear import E0_SOURCES
from ace.fitting.metrics import evaluate as _error_table
from ace.fitting.workflow import FitEstimate, FitResult, estimate_fit as _estimate_fit, run_fit
from ace.fitting.workflow import logger as workflow_logger
from ace.io import export as _export
from ace.io import load_potential
from ace.validation import quick_validate
from ace.validation import validate as _validate

__all__ = ["fit", "estimate_fit", "evaluate", "load", "export", "describe", "validate",
           "FitConfig", "FitResult", "FitEstimate"]


def _config(config, num_threads=None, progress=None, trust_pickle=False, log=None,
            scheduler=None):
    """A FitConfig from a FitConfig (copied), a dict (relative paths relative to the working
    directory) or a YAML file (relative to the file; ace's config or pacemaker's input.yaml),
    with the overrides applied."""
    if isinstance(config, FitConfig):
        config = dataclasses.replace(config)
        config.trust_pickle = config.trust_pickle or trust_pickle
    elif isinstance(config, dict):
        config = FitConfig.from_dict(config, trust_pickle=trust_pickle)
    elif isinstance(config, (str, os.PathLike)):
        config = FitConfig.load(config, log=log, trust_pickle=trust_pickle)
    else:
        raise TypeError(f"config: expected a FitConfig, a dict or a file name, got "
                        f"{type(config).__name__}")
    if num_threads is not None:
        config.num_threads = num_threads
    if progress is not None:
        config.progress = bool(progress)
    if scheduler is not None:
        config = config.with_scheduler(scheduler)
    return config


def fit(config, *, resume=False, num_threads=None, progress=None, trust_pickle=False, log=None,
        validate=True, strict=False, scheduler=None):
    """Fit the potential ``config`` describes: what ``ace fit`` does, with the same files.

    ``config``: a :class:`FitConfig`, a dict of the YAML keys (``ace/fitting/config.py``;
    relative paths are relative to the working directory) or a YAML file name. Writes the
    potential to the config's ``output`` (its metadata holds the settings, the fit report and
    the error tables), the tables to ``<output>.metrics.json`` and, for a nonlinear fit, its
    state to ``<output>.checkpoint.json``, updating ``output`` with the best potential so far
    as it goes. ``resume=True`` continues a nonlinear fit from that checkpoint.
    ``num_threads`` and ``progress`` (bars on stderr, and the nonlinear fit's lines at least
    every 10 s through ``log``) override the config's ``fit`` section; ``trust_pickle=True``
    reads pacemaker's pickled datasets (``*.pckl.gzip``; a pickle can run code when loaded, so
    only for files you trust), as ``data: {trust_pickle: true}`` does; ``log`` receives the fit's messages (default: the ``logging`` logger
    ``ace.fitting.workflow`` at INFO; ``log=print`` shows them). Before any work the output
    paths are checked and an unfittable training set is refused; doubtful data (energy
    outliers, conflicting duplicates, implausible distances) are flagged as warnings, which
    ``strict=True`` turns into a ConfigError before the fit (:mod:`ace.fitting.sanity`).
    ``scheduler``: the address of a Dask scheduler (``tcp://host:port``) to fit on: the
    config's ``fit.engine: dask`` with ``fit.scheduler`` set, the data streamed
    (:mod:`ace.fitting.distributed`).

    ``validate`` (default): after the fit, the quick part of :func:`validate` (figures of the
    errors on the training data, equation of state, elastic constants) is written to
    ``<output without .yaml>.validation/`` (``FitResult.validation``); a potential whose
    crystal cannot be chosen automatically (several elements, no known ground state) is
    reported in the log and skipped.

    Returns a :class:`FitResult`: ``.potential``, ``.tables`` (error tables by split),
    ``.report`` (the fit report), the paths written, and ``.findings`` / ``.flagged`` (the
    warnings before and after the fit).
    """
    config = _config(config, num_threads, progress, trust_pickle, log, scheduler)
    result = run_fit(config, resume=resume, log=log, strict=strict)
    if validate:
        say = log or workflow_logger.info
        if config.stream:
            say("quick validation: no data figures for streamed data (they would hold all "
                "of it); the error tables are in the metrics")
        try:
            quick_validate(result.output, data=None if config.stream else result.train,
                           num_threads=config.num_threads, log=say,
                           predictions=None if config.stream else result.train_predictions)
        except ValueError as exc:
            say(f"quick validation skipped: {exc}")
        else:
            result.validation = os.path.splitext(result.output)[0] + ".validation"
    return result


def validate(potentials, data=None, *, reference=None, structure=None, output_dir="validation",
             json_path=None, quick=False, num_threads=None, keys=None, md_steps=None, log=None):
    """What ``ace validate`` does: relax the crystal and compute the physical properties of one
    or several potentials (paths or objects; a dict names them) side by side, compare them
    with ``reference`` (a YAML file of values with units and sources) or the training data's
    own strained crystals, and write ``output_dir/report.md`` with PNG figures and the JSON
    report (``json_path``, default ``output_dir/report.json``). ``data``: files or a Dataset
    for the error tables and figures. ``quick``: data figures, EOS and elastic constants only.
    Returns the report dict (schema in ``docs/validate.md``)."""
    return _validate(potentials, data=data, reference=reference, structure=structure,
                     output_dir=output_dir, json_path=json_path, quick=quick,
                     num_threads=num_threads, keys=keys, md_steps=md_steps,
                     **({"log": log} if log is not None else {}))


def estimate_fit(config, *, num_threads=None, trust_pickle=False, log=None):
    """What ``ace fit --dry-run`` reports, without fitting: a :class:`FitEstimate` with the
    basis size (``.n_functions``, ``.counts`` per element and order), the memory the fit
    needs (``.memory``, bytes) and, for a nonlinear fit, its time (``.nonlinear_seconds``, an
    upper estimate, and ``.nonlinear_seconds_per_evaluation``). ``config`` as for
    :func:`fit`."""
    return _estimate_fit(_config(config, num_threads, False, trust_pickle, log), log=log)


def dataset(data, keys=None):
    """A :class:`Dataset` from a Dataset, an ASE Atoms or a list of them, or file names
    (a file, a glob pattern, ``file@slice`` or a list of them). ``keys``: where the labels are
    (a :class:`DataKeys` or a dict of its fields; default: the stored calculator results)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(keys, dict):
        keys = DataKeys(**keys)
    if isinstance(data, Atoms):
        data = [data]
    if isinstance(data, (str, os.PathLike)):
        return read_dataset(data, keys)
    items = list(data) if isinstance(data, (list, tuple)) else None
    if items and all(isinstance(item, Atoms) for item in items):
        return Dataset.from_atoms(items, keys=keys)
    if items and all(isinstance(item, (str, os.PathLike)) for item in items):
        return read_dataset(items, keys)
    raise TypeError(f"data: expected a Dataset, ASE Atoms, a list of Atoms or file names, got "
                    f"{type(data).__name__}")


def evaluate(potential, data, *, num_threads=None, keys=None, progress=False):
    """The error table of ``potential`` (an object or any potential file) on ``data``
    (see :func:`dataset`): {"units", "overall": row, "by_config_type": {type: row}}, a row
    holding n_structures, n_atoms and <energy|forces|stress>_<rmse|mae> in meV/atom, eV/Å and
    GPa (None where the data have no such labels). ``progress``: a bar on stderr."""
    potential = load_potential(potential)
    data = dataset(data, keys)
    data.check_elements(potential.elements)
    return _error_table(potential, data, num_threads, progress_bar(progress))


def load(path, *, reference_energy=False):
    """The :class:`ACEPotential` in ``path``: ace's YAML, PACE's .yace or pacemaker's .yaml
    (recognised from the content). ``reference_energy`` (pacemaker .yaml only): E0 from the
    file's metadata reference_energy, so that energies are totals as in training."""
    return load_potential(path, reference_energy=reference_energy)


def export(potential, path, format=None, *, e0_to_metadata=False, delta_spline_bins=None,
           active_set=None):
    """Write ``potential`` (an object or a file) for PACE: ``format`` "yace" (LAMMPS
    ``pair_style pace``, python-ace) or "pace-yaml" (pacemaker's B-basis), by default from the
    suffix of ``path`` (.yace, .yaml/.yml); "ace" writes ace's own format. ``active_set`` (an
    active set or its file; pace-yaml only) also writes PACE's ``X.asi`` beside ``X.yaml``.
    See :func:`ace.io.export` for E0 and the spline step. Returns the format written."""
    return _export(potential, path, format, e0_to_metadata=e0_to_metadata,
                   delta_spline_bins=delta_spline_bins, active_set=active_set)


def describe(potential):
    """A JSON-friendly summary of ``potential`` (an object or a file): elements, cutoff,
    functions per element and order, E0, bonds, embeddings, core repulsion, provenance (how it
    was fitted) and the error tables stored with it (what ``ace info`` prints)."""
    potential = load_potential(potential)
    el = potential.elements
    bonds = {f"{el[i]}-{el[j]}": {"radbase": b.radbase, "rcut": b.rcut, "nradbase": b.nradbase,
                                   "nradmax": b.nradmax, "lmax": b.lmax,
                                   "inner_cutoff_type": b.inner_cutoff_type, "r_in": b.r_in,
                                   "delta_in": b.delta_in}
             for (i, j), b in sorted(potential.bonds.items()) if i <= j}
    embeddings = {el[i]: {"npot": e.npot, "ndensity": e.ndensity,
                          "fs_parameters": list(e.fs_parameters)}
                  for i, e in sorted(potential.embeddings.items())}
    meta = potential.metadata or {}
    fit_section = meta.get("fit") or {}
    report = fit_section.get("report") or {}
    provenance = {k: meta[k] for k in ("created", "ace_version") if k in meta}
    if fit_section:
        config = fit_section.get("config") or {}
        provenance.update({"train": config.get("train"), "test": config.get("test"),
                           **{k: report[k] for k in ("l2", "weights", "method", "rank",
                                                     "condition", "n_train_structures")
                              if k in report}})
    linear_report = report.get("linear", report)  # a nonlinear fit started from a linear one
    e0_source = linear_report.get("e0_source") or (
        E0_SOURCES["auto"] if linear_report.get("e0_fitted") else None)
    return {"elements": el, "n_functions": potential.n_functions, "cutoff": potential.cutoff,
            "functions_per_order": {e: dict(sorted(c.items()))
                                    for e, c in potential.counts().items()},
            "e0": dict(zip(el, map(float, potential.e0))), "e0_source": e0_source,
            "bonds": bonds,
            "embeddings": embeddings, "core_repulsion": potential.has_core_repulsion,
            "provenance": provenance, "metrics": meta.get("metrics") or {}}
