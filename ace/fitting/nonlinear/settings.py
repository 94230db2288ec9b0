"""Settings of the nonlinear fit, checked on construction, and the choice of optimiser."""
from __future__ import annotations

from dataclasses import dataclass

TRAINABLE = ("coefficients", "radial", "e0")
OPTIMIZERS = ("auto", "varpro", "L-BFGS", "BFGS", "least_squares")
# embeddings whose density with fs_parameters [1, 1] enters the energy as F(rho) = rho
LINEAR_FIRST_DENSITY = ("FinnisSinclair", "FinnisSinclairShiftedScaled")
# stopping rules, which a resumed fit may raise to continue a fit that ran out of iterations
EXTENDABLE = ("max_iterations", "patience")


@dataclass
class NonlinearSettings:
    """Settings of the nonlinear fit (the ``fit`` section of the config, method nonlinear).

    optimizer: auto (default: varpro where it applies, else L-BFGS); varpro (variable
        projection: the first density's coefficients and E0 are solved exactly by linear least
        squares at every step, L-BFGS moves the rest; needs a linear first density with
        trainable coefficients, no ladder and no mini-batches); L-BFGS (ace.fitting.lbfgs: its
        memory carries over checkpoints); BFGS (scipy's, restarted at every checkpoint);
        least_squares (Levenberg–Marquardt with the exact Jacobian; only for small problems).
    trainable: any of coefficients, radial, e0; the rest is frozen.
    max_iterations: optimiser iterations in all (per restart and ladder step).
    checkpoint_every: iterations per segment; state written after each. With L-BFGS and
        varpro the optimiser's path does not depend on it (its memory carries over), except
        with mini-batches, which draw a new batch per segment.
    patience: segments without a better validation loss before stopping (0: never stop early).
    restarts: fits from differently perturbed starts (the first unperturbed), best validation
        loss kept; restart_noise: relative size of the perturbation.
    batch_size: structures per mini-batch (each segment fits a new random batch); None: all.
    ladder: numbers of functions per element to grow through (lowest degree first); None: all.
    radial_l2: lambda_rad of the radial prior (loss units).
    validation_fraction: held-out share of the training structures for early stopping and
        restart selection (none below 10 structures).

    A resumed fit must have the same settings as the checkpoint's, except the stopping rules
    (``EXTENDABLE``): raising max_iterations or patience continues the run the fit ended in
    (with restarts or a ladder, the last one); with L-BFGS and varpro, on exactly the path it
    would have taken had they been set from the start.
    """

    optimizer: str = "auto"
    trainable: tuple = TRAINABLE
    max_iterations: int = 300
    checkpoint_every: int = 25
    patience: int = 4
    restarts: int = 1
    restart_noise: float = 0.05
    batch_size: int | None = None
    ladder: list | None = None
    radial_l2: float = 1e-6
    validation_fraction: float = 0.1
    seed: int = 0
    gtol: float = 1e-9

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"fit.optimizer: {self.optimizer!r} is not one of {OPTIMIZERS}")
        self.trainable = tuple(self.trainable)
        unknown = sorted(set(self.trainable) - set(TRAINABLE))
        if unknown or not self.trainable:
            raise ValueError(f"fit.trainable: give a non-empty subset of {TRAINABLE}"
                             + (f" (unknown: {unknown})" if unknown else ""))
        for name in ("max_iterations", "checkpoint_every", "restarts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fit.{name} must be at least 1")
        if self.patience < 0 or self.restart_noise < 0 or self.radial_l2 < 0:
            raise ValueError("fit.patience, restart_noise and radial_l2 must be non-negative")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError("fit.batch_size must be a positive number of structures or null")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("fit.validation_fraction must be in [0, 1)")
        if self.ladder is not None:
            steps = [int(n) for n in self.ladder]
            if not steps or any(n < 1 for n in steps) or steps != sorted(steps):
                raise ValueError("fit.ladder: give increasing positive numbers of functions")
            self.ladder = steps



def resolve_optimizer(potential, settings):
    """The optimiser to run: ``auto`` is varpro where it applies, else L-BFGS."""
    if settings.optimizer not in ("auto", "varpro"):
        return settings.optimizer
    reasons = []
    if "coefficients" not in settings.trainable:
        reasons.append("the coefficients are frozen")
    if settings.ladder:
        reasons.append("fit.ladder is set")
    if settings.batch_size:
        reasons.append("fit.batch_size is set")
    for i, emb in sorted(potential.embeddings.items()):
        if emb.npot not in LINEAR_FIRST_DENSITY or list(emb.fs_parameters[:2]) != [1, 1]:
            reasons.append(f"the first density of {potential.elements[i]} is not linear "
                           f"({emb.npot} {list(emb.fs_parameters[:2])}; needs fs_parameters "
                           f"starting [1, 1])")
    if not reasons:
        return "varpro"
    if settings.optimizer == "varpro":
        raise ValueError("fit.optimizer varpro does not apply: " + "; ".join(reasons))
    return "L-BFGS"

