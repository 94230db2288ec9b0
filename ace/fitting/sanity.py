"""Checks around a fit: refuse what cannot be fitted and flag what would make a useless potential.

Before any work (:func:`check_outputs`): the potential, metrics and checkpoint paths must be
writable, so a long fit never ends on "cannot write". Before the fit (:func:`check_training_set`):

* refused (``ConfigError``): fewer than 2 training structures (or, with ``e0: auto``, fewer than
  the number of elements + 1: E0 and the basis cannot be told apart); no pair of atoms closer
  than the cutoff in any structure (the basis sees nothing);
* flagged (a :class:`Finding` naming each structure as ``file:index``): per-atom energies far
  from the rest (robust z-score of the residuals of a per-element reference energy fit, from
  the median and the median absolute deviation, so one outlier cannot hide itself by inflating
  the spread), duplicated structures whose energies disagree, atoms closer than half the sum of
  their covalent radii, a given ZBL ``r_in`` above most training distances.

After the fit (:func:`check_fit_errors`): flagged when the training energy error is absurd (above
``ABSURD_ENERGY_RMSE``, or twice that of per-element reference energies alone) or the force
error is above ``ABSURD_FORCE_RMSE``.

The fit workflow (:mod:`ace.fitting.workflow`) logs the findings as warnings; with ``strict``
(``ace fit --strict``) the ones found before the fit stop it, and the ones found after it give
``ace fit --strict`` exit status 3 (the potential is written).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from ace._core import effective_n_threads
from ace.fitting.config import ConfigError, implausible_distances, shortest_pairs

OUTLIER_Z = 10.0  # robust z-score (|r - median| / (1.4826 MAD)) of a flagged energy
OUTLIER_MIN_DEVIATION = 0.5  # eV/atom: smaller deviations are never flagged (tight data)
DUPLICATE_ENERGY_TOLERANCE = 1e-3  # eV/atom: duplicates disagreeing by more are flagged
ABSURD_ENERGY_RMSE = 1000.0  # meV/atom
ABSURD_FORCE_RMSE = 10.0  # eV/Å
SHOWN = 10  # structures listed per finding


@dataclass
class Finding:
    """A flagged problem: what (one line) and the structures concerned."""

    kind: str
    message: str
    structures: tuple = ()

    def __str__(self):
        if not self.structures:
            return self.message
        shown = "; ".join(self.structures[:SHOWN])
        more = f" (and {len(self.structures) - SHOWN} more)" if len(self.structures) > SHOWN else ""
        return f"{self.message}: {shown}{more}"


# ---------------------------------------------------------------------------- before any work

def check_outputs(config):
    """Raise ConfigError if the potential, metrics or checkpoint file could not be written."""
    paths = [("output", config.output), ("metrics", config.metrics_path)]
    if config.nonlinear is not None:
        paths.append(("checkpoint", os.path.splitext(config.output)[0] + ".checkpoint.json"))
    inputs = {os.path.abspath(p): "data file" for p in config.train + config.test}
    if config.path:
        inputs[os.path.abspath(config.path)] = "config file"
    for what, path in paths:
        own = inputs.get(os.path.abspath(path))
        if own:
            raise ConfigError(f"{what} {path}: is the fit's own {own}, which the fit would "
                              "overwrite; choose another name (checked before fitting)")
        problem = _unwritable(path)
        if problem:
            raise ConfigError(f"{what} {path}: {problem} (checked before fitting)")


def _unwritable(path):
    """Why ``path`` cannot be written atomically (a temporary file beside it, then a rename),
    or None."""
    if os.path.isdir(path):
        return "is a directory"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(directory):
        return f"the directory {directory} does not exist"
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    try:  # the real test: permissions, read-only file systems, quotas
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as exc:
        return f"cannot write in {directory}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(tmp)
    return None


def check_threads(config):
    """A bad thread count fails now, not after the data is read."""
    try:
        effective_n_threads(config.num_threads)
    except ValueError as exc:
        raise ConfigError(f"fit.num_threads: {exc}") from None


# ---------------------------------------------------------------------------- before the fit

def check_training_set(config, train, num_threads=None):
    """Refuse an unfittable training set (ConfigError); return the flagged findings."""
    n_el = len(config.elements)
    needed = 2 if config.loss.e0 != "auto" else max(2, n_el + 1)
    if len(train) < needed:
        reason = ("E0 of each element and the basis cannot be told apart"
                  if config.loss.e0 == "auto" else "one energy cannot fit a potential")
        raise ConfigError(f"data.train: {len(train)} structure(s) ({', '.join(train.names[:3])}) "
                          f"cannot be fitted: {reason}; need at least {needed}")
    pairs = shortest_pairs(train, config.cutoff, num_threads)
    if pairs.n_pairs.sum() == 0:
        raise ConfigError(f"cutoff: no two atoms of any training structure are closer than the "
                          f"cutoff {config.cutoff:g} Å, so the basis sees nothing; raise the "
                          f"cutoff")
    findings = []
    outliers = energy_outliers(train)
    if outliers:
        findings.append(Finding(
            "energy outlier", f"{len(outliers)} training structure(s) with per-atom energies far "
            f"from the rest (robust z-score above {OUTLIER_Z:g}, by the per-element reference "
            f"energies); check their labels",
            tuple(f"{train.names[s]} ({dev:+.3g} eV/atom, z = {z:.3g})" for s, dev, z in outliers)))
    conflicts = conflicting_duplicates(train)
    if conflicts:
        findings.append(Finding(
            "conflicting duplicates", f"{len(conflicts)} duplicated structure(s) whose energies "
            f"disagree by more than {DUPLICATE_ENERGY_TOLERANCE * 1000:g} meV/atom",
            tuple(f"{train.names[b]} vs {train.names[a]} ({de:.3g} eV/atom)"
                  for a, b, de in conflicts)))
    implausible = implausible_distances(train, pairs)
    if implausible:
        findings.append(Finding(
            "implausible distance", f"{len(implausible)} training structure(s) with atoms closer "
            "than half the sum of their covalent radii",
            tuple(f"{train.names[s]} ({d:.3f} Å < {floor:.3f} Å)" for s, d, floor in implausible)))
    core = config.core_repulsion
    finite = pairs.distance[np.isfinite(pairs.distance)]
    if isinstance(core, dict) and finite.size and core["r_in"] > np.median(finite):
        findings.append(Finding(
            "core repulsion", f"core_repulsion: r_in = {core['r_in']:g} Å is above the shortest "
            f"distance of most training structures (median {np.median(finite):.3f} Å): the ZBL "
            "core replaces the fitted potential where the data are"))
    return findings


def reference_residuals(dataset):
    """Per-atom residuals (eV/atom) of a least-squares fit E_s = sum_el n_s,el e_el: what a
    potential with no more than per-element reference energies leaves."""
    counts = dataset.counts(dataset.elements)  # a streamed dataset keeps these too
    energy = dataset.energy
    coef, *_ = np.linalg.lstsq(counts, energy, rcond=None)
    return (energy - counts @ coef) / dataset.n_atoms


def energy_outliers(dataset):
    """[(structure, deviation eV/atom, robust z)] of the per-atom energy outliers, worst first."""
    residual = reference_residuals(dataset)
    deviation = residual - np.median(residual)
    spread = 1.4826 * np.median(np.abs(deviation))
    z = np.abs(deviation) / max(spread, 1e-12)
    flagged = np.flatnonzero((z > OUTLIER_Z) & (np.abs(deviation) > OUTLIER_MIN_DEVIATION))
    flagged = flagged[np.argsort(-z[flagged])]
    return [(int(s), float(deviation[s]), float(z[s])) for s in flagged]


def conflicting_duplicates(dataset):
    """[(first, repeat, |dE| eV/atom)] of duplicated structures with different energies."""
    out = []
    for a, b in dataset.duplicates():
        de = abs(dataset.energy[a] - dataset.energy[b]) / dataset.n_atoms[a]
        if de > DUPLICATE_ENERGY_TOLERANCE:
            out.append((int(a), int(b), float(de)))
    return out


# ---------------------------------------------------------------------------- after the fit

def check_fit_errors(tables, train):
    """Findings on the fitted potential's training error (``tables["train"]`` of ace.fitting.
    metrics)."""
    findings = []
    overall = tables["train"]["overall"]
    energy = overall.get("energy_rmse")
    baseline = 1000.0 * float(np.sqrt(np.mean(reference_residuals(train) ** 2)))
    if energy is not None and (not np.isfinite(energy) or energy > ABSURD_ENERGY_RMSE):
        findings.append(Finding("absurd error", f"the training energy RMSE is {energy:.4g} "
                                f"meV/atom (above {ABSURD_ENERGY_RMSE:g}): the potential is not "
                                "usable; look for outliers and check the labels' units"))
    elif energy is not None and len(train) > 2 and energy > 2 * max(baseline, 1.0):
        findings.append(Finding("absurd error", f"the training energy RMSE ({energy:.4g} meV/atom) "
                                f"is worse than per-element reference energies alone "
                                f"({baseline:.4g} meV/atom)"))
    forces = overall.get("forces_rmse")
    if forces is not None and (not np.isfinite(forces) or forces > ABSURD_FORCE_RMSE):
        findings.append(Finding("absurd error", f"the training force RMSE is {forces:.4g} eV/Å "
                                f"(above {ABSURD_FORCE_RMSE:g})"))
    return findings

