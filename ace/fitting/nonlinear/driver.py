"""The nonlinear fit: restarts, ladder steps and segments between checkpoints, early stopping
on the validation split, the best potential kept."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.optimize

from ace._core import effective_n_threads
from ace.evaluator import compile_model
from ace.fitting import lbfgs
from ace.fitting.nonlinear.checkpoint import (fingerprint, initial_state, read_checkpoint,
                                              write_checkpoint)
from ace.fitting.nonlinear.heartbeat import Heartbeat
from ace.fitting.nonlinear.layout import ParameterLayout, ladder_masks
from ace.fitting.nonlinear.loss import NonlinearLoss, make_batches
from ace.fitting.nonlinear.projection import LinearProjection, minimise_projected
from ace.fitting.nonlinear.settings import NonlinearSettings, resolve_optimizer
from ace.potential import ACEPotential

MAX_JACOBIAN_ENTRIES = 50_000_000  # least_squares keeps the dense Jacobian: 400 MB
# the diagonal preconditioner is floored at this share of its largest entry: parameters the
# data barely determine would otherwise get huge steps (measured on teacher-student fits)
PRECONDITION_FLOOR = 1e-3
EXTRA_DENSITY_START = 1e-4  # relative size of the extra densities' random start


def start_from_linear(potential, linear, seed=0):
    """``potential`` (several densities) with the linear fit's coefficients on the first
    density and E0. The other densities start small and random, in proportion to the linear
    coefficients: at rho_p = 0 their gradient is F_p'(0) times that of the first density,
    which (but for the ridge) vanishes at the linear optimum, so an all-zero start is a saddle;
    the start is small so as not to move the energies off the linear fit (0.1 gave eV-scale
    changes on Mo and Si and a worse fit after 50 iterations)."""
    rng = np.random.default_rng(seed)
    c0 = np.asarray(linear.coefficients, dtype=float)[:, 0]
    coefficients = np.zeros((potential.n_functions, potential.ndensity_max))
    coefficients[:, 0] = c0
    for p in range(1, potential.ndensity_max):
        coefficients[:, p] = EXTRA_DENSITY_START * np.abs(c0) * rng.standard_normal(len(c0))
    for k, f in enumerate(potential.functions):
        coefficients[k, potential.embeddings[f.mu0].ndensity:] = 0.0
    return ACEPotential(potential.elements, potential.bonds, potential.embeddings,
                        potential.functions, coefficients, e0=linear.e0,
                        basis_spec=potential.basis_spec, min_distance=potential.min_distance)


@dataclass
class NonlinearFit:
    """The fitted potential and a JSON-friendly report."""

    potential: object
    report: dict


def fit_nonlinear(potential, train, settings=None, weights=None, tau=None, penalty=None,
                  num_threads=None, checkpoint=None, resume=False, save_best=None, log=None,
                  metadata=None, context=None, progress=None):
    """Minimise the nonlinear loss from the parameters of ``potential`` (the start).

    ``weights`` [n_s] structure weights (default 1), ``tau`` {forces, stress} term weights,
    ``penalty`` [n_functions] the ridge penalty d_k (default 0). ``checkpoint``: path of the
    JSON state written after every segment; ``resume``: continue from it. ``save_best(pot)``
    is called whenever the best potential improves (so an interrupted fit leaves one).
    ``context``: JSON data stored with every checkpoint, for the caller to read back with
    :func:`read_checkpoint_context` before resuming (``ace fit`` keeps its linear fit there).
    ``log`` gets one line per segment; ``progress`` (None: silent) gets a line at least every
    10 s inside segments, with an estimate of the time left
    (:mod:`ace.fitting.nonlinear.heartbeat`).

    Resuming: a fit resumed from its checkpoint repeats the uninterrupted fit exactly (the same
    parameters, history and best score, bit for bit) with L-BFGS, varpro and scipy's BFGS,
    and with mini-batches: each segment starts from the state the checkpoint holds. L-BFGS
    and varpro carry their curvature memory in it, so their path does not depend on
    checkpoint_every either; BFGS, least_squares and mini-batch segments (a new batch each)
    start their memory afresh at every checkpoint, so there the path depends on
    checkpoint_every (the report's ``checkpoint_memory``: "carried" or "restarted").
    least_squares resumes from the checkpoint's parameters, but not bit for bit: MINPACK's
    Levenberg-Marquardt path differed in the 9th digit between repeated fits in one test
    session.

    The report's ``runs`` say how each run (restart, ladder step) ended: "converged" (the
    optimiser met gtol), "line search failed" (no step lowered the loss before the gradient
    reached gtol: not converged), "max_iterations" or "validation plateau" (patience);
    ``converged`` is whether every run converged.
    """
    settings = settings or NonlinearSettings()
    log = log or (lambda message: None)
    start_time = time.perf_counter()
    train.check_elements(potential.elements)
    weights = np.ones(len(train)) if weights is None else np.asarray(weights, dtype=float)
    tau = {"forces": 1.0, "stress": 0.0, **(tau or {})}
    penalty = np.zeros(potential.n_functions) if penalty is None else np.asarray(penalty, float)
    if penalty.shape != (potential.n_functions,):
        raise ValueError(f"penalty needs one entry per function ({potential.n_functions})")
    n_threads = effective_n_threads(num_threads)

    if settings.validation_fraction > 0 and len(train) >= 10:
        fit_idx, val_idx = train.split_indices(settings.validation_fraction, settings.seed)
    else:
        fit_idx, val_idx = np.arange(len(train)), np.zeros(0, dtype=np.int64)
    heartbeat = Heartbeat(progress, settings.max_iterations * settings.restarts)
    heartbeat.stage(f"neighbour lists of {len(fit_idx)} fit and {len(val_idx)} validation "
                    "structures")
    design = compile_model(potential, design=True)
    fit_batches = make_batches(potential, train, weights, fit_idx, n_threads)
    val_batches = make_batches(potential, train, weights, val_idx, n_threads) if len(val_idx) \
        else []
    masks = ladder_masks(potential, settings.ladder)
    heartbeat.total *= len(masks)
    fit_fingerprint = fingerprint(potential, train, settings, weights, tau, penalty)
    optimizer = resolve_optimizer(potential, settings)
    carry_memory = memory_carried(optimizer, settings)
    fit_data = train.subset(fit_idx) if optimizer == "varpro" else None

    state = initial_state(potential.to_dict())
    if resume:
        state = read_checkpoint(checkpoint, fit_fingerprint)
        log(f"resuming from {checkpoint}: restart {state['restart'] + 1}, ladder step "
            f"{state['step'] + 1}, iteration {state['iteration']}")
    last_run = (settings.restarts - 1, len(masks) - 1)

    try:
        while True:
            if run_end(state, settings) is None:
                anchor = ACEPotential.from_dict(state["anchor"])
                layout = ParameterLayout(anchor, settings.trainable, masks[state["step"]])
                theta_start = layout.pack()
                if state["step"] == 0 and state["restart"] > 0:
                    theta_start = _perturbed(theta_start, layout, settings, state["restart"])
                theta = theta_start if state["theta"] is None else np.array(state["theta"])
                full = NonlinearLoss(layout, design, fit_batches, tau, penalty,
                                     settings.radial_l2, num_threads)
                validation = NonlinearLoss(layout, design, val_batches, tau, penalty,
                                           settings.radial_l2, num_threads) if val_batches else None
                _check_problem_size(full, optimizer)
                projection = LinearProjection(layout, fit_data, weights[fit_idx], tau, penalty,
                                              num_threads) if optimizer == "varpro" else None
                heartbeat.stage(f"restart {state['restart'] + 1}/{settings.restarts}, step "
                                f"{state['step'] + 1}/{len(masks)}: preconditioner, then "
                                f"{optimizer} iterations")
                # a function of the step's start only, so that a resumed fit uses the same
                diagonal = full.gauss_newton_diagonal(theta_start, seed=settings.seed)
                scale = 1.0 / np.sqrt(diagonal + PRECONDITION_FLOOR * max(diagonal.max(), 1e-300))
            while run_end(state, settings) is None:
                n_iter = min(settings.checkpoint_every,
                             settings.max_iterations - state["iteration"])
                loss = full
                if settings.batch_size:
                    loss = _minibatch_loss(full, potential, train, weights, fit_idx, settings,
                                           state, design, n_threads, num_threads)
                memory = state["memory"] if carry_memory else None
                heartbeat.segment(f"restart {state['restart'] + 1}/{settings.restarts}, step "
                                  f"{state['step'] + 1}/{len(masks)}, ",
                                  (state["restart"] * len(masks) + state["step"])
                                  * settings.max_iterations, state["iteration"], n_iter)
                result = _minimise(heartbeat.watch(loss), theta, n_iter, settings, scale,
                                   optimizer, projection, memory)
                theta = result.x
                state["memory"] = result.memory
                state["iteration"] += max(int(result.nit), 1)
                state["segment"] += 1
                train_terms = full.terms(theta)
                score_terms = validation.terms(theta) if validation else train_terms
                score = sum(score_terms.values())
                improved = state["best_in_run_loss"] is None or score < state["best_in_run_loss"]
                if improved:
                    state["best_in_run"] = layout.potential_for(theta).to_dict()
                    state["best_in_run_loss"] = score
                    state["stale"] = 0
                else:
                    state["stale"] += 1
                state["history"].append({
                    "restart": state["restart"], "step": state["step"],
                    "iteration": state["iteration"], "loss": float(result.fun),
                    "train": {k: float(v) for k, v in train_terms.items()},
                    "validation": ({k: float(v) for k, v in score_terms.items()}
                                   if validation else None)})
                if state["best_loss"] is None or score < state["best_loss"]:
                    state["best"] = state["best_in_run"]
                    state["best_loss"] = score
                    if save_best is not None:
                        save_best(ACEPotential.from_dict(state["best"]))
                where = (f"restart {state['restart'] + 1}/{settings.restarts}, step "
                         f"{state['step'] + 1}/{len(masks)}")
                log(f"{where}, iteration {state['iteration']}: "
                    f"loss {result.fun:.4e}, {'validation' if validation else 'train'} "
                    f"RMSE E {_rmse(score_terms, 'energy', 1e3):.3f} meV/atom, F "
                    f"{_rmse(score_terms, 'forces', 1.0, tau):.4f} eV/Å")
                state["converged"] = bool(result.success) and int(result.nit) < n_iter
                state["stalled"] = bool(result.stalled)
                state["theta"] = theta.tolist()
                end = run_end(state, settings)
                if end is not None:
                    log(f"{where} ended after {state['iteration']} iterations: "
                        f"{END_MESSAGES[end]}")
                if checkpoint:
                    write_checkpoint(checkpoint, state, fit_fingerprint, context)
            # the last run's state stays in the checkpoint, so that a resumed fit with a
            # larger max_iterations or patience can continue it
            if (state["restart"], state["step"]) == last_run:
                break
            next_run(state, settings, len(masks))
            if checkpoint:
                write_checkpoint(checkpoint, state, fit_fingerprint, context)
    except KeyboardInterrupt:
        log("interrupted: the best potential so far is kept"
            + (f"; resume with the checkpoint {checkpoint}" if checkpoint else ""))
        raise
    best = ACEPotential.from_dict(state["best"])
    best.metadata.update(metadata or {})
    runs = state["runs"] + [run_record(state, settings)]
    report = {
        "method": "nonlinear",
        "optimizer": optimizer,
        "n_parameters": ParameterLayout(best, settings.trainable).size,
        "trainable": list(settings.trainable),
        "best_score": float(state["best_loss"]),
        "score_on": "validation" if val_batches else "train",
        "n_fit_structures": int(len(fit_idx)),
        "n_validation_structures": int(len(val_idx)),
        "weights": {"energy": 1.0, "forces": float(tau["forces"]), "stress": float(tau["stress"])},
        "settings": asdict(settings),
        "converged": all(run["end"] == "converged" for run in runs),
        "runs": runs,
        "checkpoint_memory": "carried" if carry_memory else "restarted",
        "history": state["history"],
        "seconds": round(time.perf_counter() - start_time, 2),
    }
    return NonlinearFit(best, report)


def memory_carried(optimizer, settings):
    """Whether the optimiser's curvature memory carries over checkpoints (L-BFGS and varpro
    on the full data); otherwise each segment starts it afresh (scipy's BFGS, least_squares,
    and mini-batches: a new batch is a new loss each segment)."""
    return optimizer in ("L-BFGS", "varpro") and not settings.batch_size


def run_end(state, settings):
    """Why the current run (restart, ladder step) is over, or None while it has iterations left:
    converged, stalled (line search failed), stopped by a validation plateau, or at
    max_iterations."""
    if state["converged"]:
        return "converged"
    if state["stalled"]:
        return "line search failed"
    if settings.patience and state["stale"] >= settings.patience:
        return "validation plateau"
    if state["iteration"] >= settings.max_iterations:
        return "max_iterations"
    return None


END_MESSAGES = {
    "converged": "converged (gradient below gtol)",
    "line search failed": "not converged: the line search found no step that lowers the loss "
                          "(gradient still above gtol)",
    "validation plateau": "stopped early: no better validation loss for `patience` segments",
    "max_iterations": "not converged: max_iterations reached",
}


def run_record(state, settings):
    """How the current run ended, for the report."""
    return {"restart": state["restart"], "step": state["step"],
            "iterations": state["iteration"], "end": run_end(state, settings)}


def next_run(state, settings, n_steps):
    """Move the state to the next ladder step (from the best of this one) or, after the last
    step, to the next restart (from the start); the run left is recorded in ``runs``."""
    state["runs"].append(run_record(state, settings))
    if state["step"] + 1 < n_steps:
        state.update(step=state["step"] + 1, anchor=state["best_in_run"])
    else:
        state.update(restart=state["restart"] + 1, step=0, anchor=state["start"],
                     best_in_run=None)
    state.update(iteration=0, theta=None, stale=0, converged=False, stalled=False, memory=None,
                 best_in_run_loss=None)


def _rmse(terms, term, unit, tau=None):
    scale = tau[term] if tau else 1.0
    return unit * float(np.sqrt(max(terms[term], 0.0) / scale)) if scale > 0 else 0.0


def _perturbed(theta, layout, settings, restart):
    rng = np.random.default_rng([settings.seed, restart])
    nc, nr, _ = layout.sizes
    out = theta.copy()
    noise = settings.restart_noise * rng.standard_normal(nc + nr)
    out[:nc + nr] *= 1.0 + noise
    return out


def _check_problem_size(loss, optimizer):
    if optimizer == "least_squares":
        entries = loss.n_residuals() * loss.layout.size
        if entries > MAX_JACOBIAN_ENTRIES:
            raise ValueError(f"optimizer least_squares: the Jacobian would have {entries:.3g} "
                             f"entries (limit {MAX_JACOBIAN_ENTRIES:.3g}); use L-BFGS")


def _minibatch_loss(full, potential, train, weights, fit_idx, settings, state, design,
                    n_threads, num_threads):
    rng = np.random.default_rng([settings.seed, state["restart"], state["step"], state["segment"]])
    size = min(int(settings.batch_size), len(fit_idx))
    chosen = np.sort(rng.choice(fit_idx, size=size, replace=False))
    batches = make_batches(potential, train, weights, chosen, n_threads)
    return NonlinearLoss(full.layout, design, batches, full.tau, full.penalty, full.radial_l2,
                         num_threads)


def _minimise(loss, theta, n_iter, settings, scale, optimizer, projection=None, memory=None):
    """Run the optimiser for at most n_iter iterations. Quasi-Newton runs in the coordinates
    theta / scale (the floored Gauss-Newton diagonal: faster on teacher-student fits, neutral
    on mlearn Si); Levenberg-Marquardt scales by its Jacobian itself; varpro runs L-BFGS on
    the parameters outside ``projection``'s linear part, solving that part at every point.
    ``memory``: the L-BFGS state of the previous segment of this run (None: start afresh);
    the result's ``memory`` is the state to continue from (None for BFGS and least_squares),
    its ``stalled`` whether L-BFGS ended on a failed line search (scipy's BFGS may fail one
    too; the next segment restarts its memory, which can get it going again)."""
    if optimizer == "varpro":
        result = minimise_projected(loss, theta, n_iter, settings, scale, projection, memory)
        result.stalled = result.status == lbfgs.LINE_SEARCH_FAILED
        return result
    if optimizer == "least_squares":
        cache = {}

        def evaluate(x):
            key = x.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = loss.residuals_and_jacobian(x)
            return cache[key]

        result = scipy.optimize.least_squares(lambda x: evaluate(x)[0], theta,
                                              jac=lambda x: evaluate(x)[1], method="lm",
                                              x_scale="jac", max_nfev=n_iter + 1, xtol=1e-15,
                                              ftol=1e-15, gtol=settings.gtol)
        result.fun = float(np.sum(result.fun ** 2))
        result.nit = result.nfev
        result.success = result.status > 0
        result.memory, result.stalled = None, False
        return result

    def scaled(z):
        value, grad = loss.value_and_gradient(z * scale)
        return value, grad * scale

    if optimizer == "L-BFGS":
        result = lbfgs.minimise(scaled, theta / scale, n_iter, settings.gtol, memory)
        result.stalled = result.status == lbfgs.LINE_SEARCH_FAILED
    else:
        result = scipy.optimize.minimize(scaled, theta / scale, jac=True, method=optimizer,
                                         options={"maxiter": n_iter, "gtol": settings.gtol})
        result.memory, result.stalled = None, False
    result.x = result.x * scale
    return result

