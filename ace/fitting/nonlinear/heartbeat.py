"""Signs of life from the nonlinear fit: a line at least every ``interval`` seconds (10 by
default) with the iteration, the loss, the time spent and an estimate of the time left, and a
time estimate of the whole nonlinear stage for ``ace fit --dry-run`` (:func:`ace.estimate_fit`).

The optimisers run a segment of iterations without returning; :meth:`Heartbeat.watch` wraps the
loss they evaluate, so the line comes from inside a segment. Iterations are counted by loss
evaluations (L-BFGS takes about one per iteration), so the iteration shown is approximate
(``~``) until the segment ends; the time left assumes every run uses all its iterations, an
upper bound when a fit converges or stops early.
"""
from __future__ import annotations

import time

import numpy as np

from ace._core import effective_n_threads
from ace.evaluator import compile_model
from ace.fitting.nonlinear.layout import ParameterLayout
from ace.fitting.nonlinear.loss import NonlinearLoss, make_batches

HEARTBEAT_SECONDS = 10.0
EVALUATIONS_PER_ITERATION = 1.2  # L-BFGS/BFGS line searches: measured 1.0-1.3 on EMT fits


class Heartbeat:
    """Progress lines through ``log`` at most every ``interval`` s (None log: silent)."""

    def __init__(self, log, total_iterations, interval=HEARTBEAT_SECONDS, clock=time.perf_counter):
        self.log = log
        self.total = max(int(total_iterations), 1)
        self.interval = interval
        self.clock = clock
        self.start = self.last = clock()
        self.done_before = 0  # iterations of finished segments and runs
        self.origin = None  # iterations done when this process started (a resumed fit)
        self.prefix = ""
        self._segment_start = 0
        self._segment_size = 1
        self._evaluations = 0

    def stage(self, message):
        """Say what the fit does next (a step that has no iterations to count)."""
        if self.log is not None:
            self.log(f"nonlinear: {message}")
            self.last = self.clock()

    def segment(self, prefix, done_before, iteration, n_iter):
        """A segment of ``n_iter`` iterations starts at ``iteration`` of its run;
        ``done_before``: iterations of the fit's earlier runs."""
        self.prefix = prefix
        self.done_before = done_before
        if self.origin is None:
            self.origin = done_before + iteration
            self.start = self.clock()
        self._segment_start = iteration
        self._segment_size = max(int(n_iter), 1)
        self._evaluations = 0

    def watch(self, loss):
        """``loss`` whose evaluations beat the heart."""
        return _Watched(loss, self) if self.log is not None else loss

    def beat(self, value):
        self._evaluations += 1
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        within = min(int(self._evaluations / EVALUATIONS_PER_ITERATION), self._segment_size)
        iteration = self._segment_start + within
        done = self.done_before + iteration
        elapsed = now - self.start
        here = done - (self.origin or 0)
        left = elapsed / here * max(self.total - done, 0) if here > 0 else None
        self.log(f"nonlinear: {self.prefix}iteration ~{iteration}, loss {value:.4e}, "
                 f"{elapsed:.0f} s" + (f", at most about {left:.0f} s left"
                                       if left is not None else ""))


class _Watched:
    """A loss whose evaluations call the heartbeat; everything else passes through."""

    def __init__(self, loss, heartbeat):
        self._loss = loss
        self._heartbeat = heartbeat

    def __getattr__(self, name):
        return getattr(self._loss, name)

    def value(self, theta):
        value = self._loss.value(theta)
        self._heartbeat.beat(float(value))
        return value

    def value_and_gradient(self, theta):
        value, gradient = self._loss.value_and_gradient(theta)
        self._heartbeat.beat(float(value))
        return value, gradient

    def residuals_and_jacobian(self, theta):
        residuals, jacobian = self._loss.residuals_and_jacobian(theta)
        self._heartbeat.beat(float((residuals ** 2).sum()))
        return residuals, jacobian


def estimate_nonlinear_seconds(potential, train, settings, num_threads=None, repeats=2):
    """(seconds of one loss-and-gradient evaluation on ``train``, upper estimate of the whole
    nonlinear stage): max_iterations x restarts x ladder steps iterations, each about
    EVALUATIONS_PER_ITERATION evaluations. ``potential`` is the unfitted start (several
    densities); the evaluation cost does not depend on the coefficients' values."""
    n_threads = effective_n_threads(num_threads)
    batches = make_batches(potential, train, np.ones(len(train)), None, n_threads)
    layout = ParameterLayout(potential, settings.trainable)
    loss = NonlinearLoss(layout, compile_model(potential, design=True), batches,
                         {"forces": 1.0, "stress": 0.0}, np.zeros(potential.n_functions),
                         settings.radial_l2, num_threads)
    theta = layout.pack()
    loss.value_and_gradient(theta)  # first call compiles and warms caches
    start = time.perf_counter()
    for _ in range(repeats):
        loss.value_and_gradient(theta)
    per_evaluation = (time.perf_counter() - start) / repeats
    runs = settings.restarts * (len(settings.ladder) + 1 if settings.ladder else 1)
    return per_evaluation, per_evaluation * EVALUATIONS_PER_ITERATION * \
        settings.max_iterations * runs
