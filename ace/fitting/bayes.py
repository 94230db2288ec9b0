"""Bayesian posterior of a linear fit and a committee sampled from it.

On the standardised coefficients x (x_k = c_k sqrt(g_k), g the Gram diagonal, E0 eliminated as in
:class:`ace.fitting.linear.RidgeSystem`) the fit's loss is the mean square Q(x) = x^T G x -
2 b^T x + yy over its N rows. Bayesian linear regression with noise precision beta and prior
x ~ N(0, alpha^-1 I) has the posterior precision

    A = beta N G + alpha I,

and alpha, beta are chosen by maximising the evidence (MacKay's fixed point, in the eigenbasis
of G): gamma = sum_i beta N v_i / (beta N v_i + alpha) well-determined parameters,
alpha = gamma / |x|^2, beta = (N - gamma) / (N Q(x)). The committee members are x_fit + d_k with
d_k ~ N(0, A^-1), centred so that their mean is exactly the fitted potential (whose ridge was
chosen by validation); E0 of each member follows from its coefficients (E0 = u - K c, the
Schur complement of the fit). Stored in the potential file (``ACEPotential.committee``).
"""
from __future__ import annotations

import numpy as np

DEFAULT_MEMBERS = 32
EVIDENCE_ITERATIONS = 200
EVIDENCE_TOLERANCE = 1e-8


def evidence_hyperparameters(values, projected_rhs, yy, rows):
    """(alpha, beta, gamma) maximising the evidence, from the eigenvalues ``values`` of the
    standardised Gram, (V^T b) ``projected_rhs``, the mean square of the targets and N rows."""
    values = np.maximum(values, 0.0)
    n = float(max(rows, 1))
    ratio = 1e-6 * max(values.max(initial=0.0), 1e-300)  # alpha / (beta N), a start
    alpha = beta = 1.0
    gamma = 0.0
    for _ in range(EVIDENCE_ITERATIONS):
        x2 = np.sum(projected_rhs ** 2 / (values + ratio) ** 2)  # |x|^2 of the posterior mean
        misfit = max(yy - np.sum(projected_rhs ** 2 * (values + 2 * ratio) / (values + ratio) ** 2),
                     1e-300)
        gamma = float(np.sum(values / (values + ratio)))
        alpha = gamma / max(x2, 1e-300)
        beta = max(n - gamma, 1.0) / (n * misfit)
        new_ratio = alpha / (beta * n)
        if abs(new_ratio - ratio) <= EVIDENCE_TOLERANCE * ratio:
            ratio = new_ratio
            break
        ratio = new_ratio
    return float(alpha), float(beta), gamma


def posterior_committee(system, params, n_members=DEFAULT_MEMBERS, seed=0):
    """Committee around the fitted parameters ``params`` ([c, E0] as RidgeSystem.solve gives)
    of the ridge ``system``. Returns a dict for ``ACEPotential.committee``."""
    if n_members < 2:
        raise ValueError(f"a committee needs at least 2 members, got {n_members}")
    values, vectors = system.eig()
    projected = vectors.T @ system.bs
    alpha, beta, gamma = evidence_hyperparameters(values, projected, system.yy, system.rows)
    precision = beta * max(system.rows, 1) * values + alpha
    rng = np.random.default_rng(seed)
    draws = rng.standard_normal((n_members, len(values))) / np.sqrt(precision)
    draws -= draws.mean(axis=0)  # the committee's mean is exactly the fit
    deviations = np.zeros((n_members, system.nf))
    deviations[:, system.active] = (draws @ vectors.T) * system.scale
    coefficients = params[:system.nf][None, :] + deviations
    e0 = None
    if system.ne:
        _, K = system._e0_from
        e0 = params[system.nf:][None, :] - deviations @ K.T
    return {"coefficients": coefficients, "e0": e0, "prior_precision": alpha,
            "noise_precision": beta, "effective_parameters": gamma, "seed": int(seed)}


def committee(system, params, e0, n_members=DEFAULT_MEMBERS, seed=0):
    """The :class:`ace.potential.Committee` of the fit ``params`` of the ridge ``system``
    (``e0``: the fit's reference energies, shared by every member when they were given)."""
    from ace.potential import Committee

    found = posterior_committee(system, params, n_members, seed)
    members_e0 = found["e0"] if found["e0"] is not None else np.tile(e0, (n_members, 1))
    return Committee(found["coefficients"], members_e0, {
        "method": "bayesian ridge, evidence-maximised prior and noise precision",
        "prior_precision": found["prior_precision"], "noise_precision": found["noise_precision"],
        "effective_parameters": found["effective_parameters"], "seed": found["seed"]})
