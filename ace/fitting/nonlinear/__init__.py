"""Nonlinear fit: several densities with Finnis–Sinclair embeddings and trainable radial
functions, minimised with scipy or ace.fitting.lbfgs on exact gradients from the compiled core.

The loss is the linear fit's (ace.fitting.linear: each term a weighted mean square, the same
structure weights and term weights tau_F, tau_S) plus priors::

    L = L_E + tau_F L_F + tau_S L_S + sum_k d_k sum_p c_kp^2
        + lambda_rad sum_(bond, n, l, k) (1 + k)^2 (crad_nlk - crad0_nlk)^2 / nradbase^2

d_k is the linear fit's ridge penalty (so that the linear solution, the default start, is the
optimum of the linear part); the radial prior keeps R_nl close to its start and penalises the
rough high-k base functions most. The model and its notation: docs/model.md; how a fit moves
from the linear to the nonlinear stage: docs/data-flow.md.

Robustness: the optimisation runs in segments of ``checkpoint_every`` iterations, after each
of which the state, with the L-BFGS memory (ace.fitting.lbfgs), is written atomically as JSON; a
fit resumed from a checkpoint follows exactly the path of one uninterrupted run (bit for bit
with L-BFGS, varpro, BFGS and mini-batches; see :func:`fit_nonlinear`, also for which paths do
not depend on ``checkpoint_every``), and a finished fit can be continued with a larger
max_iterations or patience. The best parameters on
the validation split are kept (early stopping on a plateau); Ctrl-C writes them.

The modules, in the order they build on each other:

* ``settings``: :class:`NonlinearSettings` and the choice of optimiser;
* ``layout``: :class:`ParameterLayout`, the parameter vector theta <-> the potential, and the
  ladder's active functions;
* ``loss``: structures in kernel form (:func:`make_batches`) and :class:`NonlinearLoss`, its
  gradient and Jacobian;
* ``projection``: variable projection (:class:`LinearProjection`), the linear part solved
  exactly at every step;
* ``checkpoint``: the fit's state and its checkpoint file;
* ``heartbeat``: progress lines from inside the optimisers' segments, with the time left, and
  the time estimate of a whole fit (:func:`estimate_nonlinear_seconds`);
* ``driver``: :func:`fit_nonlinear`, the restarts, ladder steps and segments.
"""
from ace.fitting.linear import solve_symmetric
from ace.fitting.nonlinear.checkpoint import (CHECKPOINT_FORMAT, CheckpointError,
                                              read_checkpoint_context)
from ace.fitting.nonlinear.driver import (EXTRA_DENSITY_START, MAX_JACOBIAN_ENTRIES,
                                          PRECONDITION_FLOOR, NonlinearFit, fit_nonlinear,
                                          start_from_linear)
from ace.fitting.nonlinear.heartbeat import Heartbeat, estimate_nonlinear_seconds
from ace.fitting.nonlinear.layout import ParameterLayout, ladder_masks
from ace.fitting.nonlinear.loss import (MAX_BATCH_PAIRS, Batch, NonlinearLoss, make_batches,
                                        scatter_forces, term_norms)
from ace.fitting.nonlinear.projection import LinearProjection, linear_part
from ace.fitting.nonlinear.settings import (EXTENDABLE, LINEAR_FIRST_DENSITY, OPTIMIZERS,
                                            TRAINABLE, NonlinearSettings, resolve_optimizer)

__all__ = [
    "CHECKPOINT_FORMAT", "EXTENDABLE", "EXTRA_DENSITY_START", "LINEAR_FIRST_DENSITY",
    "MAX_BATCH_PAIRS", "MAX_JACOBIAN_ENTRIES", "OPTIMIZERS", "PRECONDITION_FLOOR", "TRAINABLE",
    "Batch", "CheckpointError", "Heartbeat", "LinearProjection", "NonlinearFit", "NonlinearLoss",
    "NonlinearSettings", "ParameterLayout", "estimate_nonlinear_seconds", "fit_nonlinear", "ladder_masks", "linear_part",
    "make_batches", "read_checkpoint_context", "resolve_optimizer", "scatter_forces",
    "solve_symmetric", "start_from_linear", "term_norms",
]
