"""Linear least-squares fit of an ACE potential: weighted ridge regression on design rows.

For a potential with a linear embedding (one density, F(phi) = phi) the energy is linear in the
coefficients c and the per-element reference energies E0::

    E_s = sum_k c_k (sum_i B_ik)  +  sum_mu n_s,mu E0_mu  +  (core repulsion, fixed)

The loss is that of docs/model.md (section 7), with every term normalised by its total row weight, so that
each term is a weighted mean square and the term weights are dimensionless ratios::

    L = sum_s w_s r_E,s^2 / sum_s w_s                                   r_E = (E - E_ref) / N_s
      + tau_F sum_s w_s sum_(i,a) r_F,sia^2 / sum_s 3 N_s w_s            r_F = F - F_ref   (eV/Å)
      + tau_S sum_s w_s sum_(a,b) r_S,sab^2 / sum_s 9 w_s                 r_S = stress - ref (eV/Å³)
      + lambda sum_k g_k c_k^2

w_s is the structure weight (config_type weight x the data's weight x an optional energy-based
factor). By default g_k = mean(G_jj) ((1 + D_k) / (1 + mean D))^p, a smoothness prior: D_k is
the radial plus angular degree of function k, p = ``smoothness`` (2) and G the (E0-projected)
data Gram matrix, so lambda stays relative to the data while rough functions are penalised
more (:func:`smoothness_prior`); with ``smoothness`` None, g_k = G_kk, the scale-free ridge.
E0 is not penalised (it is eliminated exactly by a Schur complement).

The normal equations of each term are accumulated structure by structure in chunks of rows
(``chunk_rows`` x n_params doubles, BLAS ``syrk``), so memory is bounded by the basis size and
not by the data. tau_F, tau_S and lambda are chosen on a held-out validation split (each
candidate costs one Cholesky solve of the small system; the validation error comes from the
validation set's own normal equations) or lambda by generalised cross-validation; the final
coefficients are then solved on all the training data.
"""
from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from ace._core import effective_n_threads
from ace.evaluator import Evaluator, Structure
from ace.fitting import bayes
from ace.potential import ACEPotential

TERMS = ("energy", "forces", "stress")
L2_GRID = tuple(10.0 ** k for k in range(-12, 1))  # relative ridge strengths tried by GCV
DEFAULT_FORCES_WEIGHT = 0.01  # used when tau_F is not chosen by (cross-)validation
DEFAULT_STRESS_WEIGHT = 0.1
DEFAULT_CHUNK_ROWS = 4096
# exponent of the smoothness prior of the ridge (smoothness_prior); None: the scale-free ridge.
# 2 lowers the 5-fold CV error of both energies and forces on the mlearn Mo and Si training sets
# and, trained without the surfaces, their energy error by 23x on Mo (potentials/README.md)
DEFAULT_SMOOTHNESS = 2.0
METHODS = ("cv", "validation", "gcv")
RANK_TOLERANCE = 1e-12  # eigenvalues of the standardised Gram below this x the largest: rank loss


@dataclass
class LossSettings:
    """Weights, regularisation and reference energies of the linear fit (see module doc).

    forces, stress: tau_F, tau_S, or "auto" (chosen on the validation split).
    config_type: {config_type: weight multiplier}, others 1.
    energy_kT: energy-based weighting, eV/atom: structures ``dE`` above the lowest energy per
        atom (after a linear composition reference) get weight exp(-dE / kT), at least
        ``energy_min_weight``. None: off.
    l2: lambda (relative ridge strength), or "auto".
    method: how "auto" values are chosen: "cv" (``folds``-fold cross-validation, the default),
        "validation" (one held-out split of ``validation_fraction``) or "gcv" (lambda by
        generalised cross-validation; tau_F, tau_S fixed, "auto" meaning the defaults).
    smoothness: exponent p of the ridge's smoothness prior (:func:`smoothness_prior`): the
        penalty of a function grows as (1 + its degree)^p; None: the scale-free ridge (each
        column standardised by the data).
    e0: "auto" (fitted with the coefficients: a free constant per element, so absolute and
        cohesive energies mean nothing), {element: eV} (e.g. pacemaker's free-atom reference
        energies), "isolated" (the energies of isolated-atom structures in the training data:
        single atoms with no periodic image within the cutoff) or {isolated: config_type}
        (the structures of that config_type).
    """

    forces: float | str = "auto"
    stress: float | str = "auto"
    config_type: dict = field(default_factory=dict)
    energy_kT: float | None = None
    energy_min_weight: float = 0.01
    l2: float | str = "auto"
    method: str = "cv"
    folds: int = 5
    validation_fraction: float = 0.1
    seed: int = 0
    e0: str | dict = "auto"
    smoothness: float | None = DEFAULT_SMOOTHNESS

    def __post_init__(self):
        for name in ("forces", "stress", "l2"):
            value = getattr(self, name)
            if value != "auto" and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name}: expected 'auto' or a number >= 0, got {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {self.method!r}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds: expected an integer >= 2, got {self.folds!r}")
        if not (self.e0 in ("auto", "isolated") or isinstance(self.e0, dict)):
            raise ValueError(f"e0: expected 'auto', 'isolated', {{isolated: config_type}} or a "
                             f"mapping element -> eV, got {self.e0!r}")
        if isinstance(self.e0, dict) and "isolated" in self.e0:
            if set(self.e0) != {"isolated"} or not isinstance(self.e0["isolated"], str):
                raise ValueError(f"e0: expected {{isolated: <config_type of the isolated-atom "
                                 f"structures>}}, got {self.e0!r}")
        elif isinstance(self.e0, dict):
            bad = {k: v for k, v in self.e0.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float))
                   or not np.isfinite(v)}
            if bad:
                raise ValueError(f"e0: reference energies must be finite numbers (eV), got {bad}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), "
                             f"got {self.validation_fraction}")
        if not isinstance(self.config_type, dict) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                for w in self.config_type.values()):
            raise ValueError(f"config_type weights: expected a mapping config_type -> weight "
                             f">= 0, got {self.config_type!r}")
        if self.smoothness is not None and (
                isinstance(self.smoothness, bool) or not isinstance(self.smoothness, (int, float))
                or not 0 <= self.smoothness <= 8):
            raise ValueError(f"smoothness: expected null (scale-free ridge) or a prior exponent "
                             f"between 0 and 8, got {self.smoothness!r}")
        if self.energy_kT is not None and not self.energy_kT > 0:
            raise ValueError(f"energy_kT must be positive, got {self.energy_kT}")

    @property
    def needs_validation(self):
        return self.method != "gcv" and "auto" in (self.forces, self.stress, self.l2)

    def n_parts(self, n_structures):
        """Number of parts the training data are accumulated in (1: no validation)."""
        if not self.needs_validation or n_structures < 4:
            return 1
        return min(self.folds, n_structures) if self.method == "cv" else 2


@dataclass
class LinearFit:
    """The fitted potential and a JSON-friendly report of the solve."""

    potential: object
    report: dict
    # the ridge penalty as sum_k penalty[k] c_k^2 in the units of the loss (the nonlinear fit
    # starting from this solution keeps it)
    penalty: np.ndarray | None = None

    def __repr__(self):
        r = self.report
        return (f"LinearFit({r['n_functions']} functions, rank {r['rank']}, "
                f"l2={r['l2']:.1e}, forces weight={r['weights']['forces']:.3g})")


# ---------------------------------------------------------------------- weights

def structure_weights(dataset, settings, elements):
    """[n_s] weight of each structure: config_type weight x data weight x energy factor."""
    unknown = sorted(set(settings.config_type) - set(dataset.config_type.tolist()))
    if unknown:
        warnings.warn(f"config_type weights name types absent from the data: {unknown}",
                      stacklevel=2)
    weights = np.array([float(settings.config_type.get(t, 1.0)) for t in dataset.config_type])
    weights *= dataset.weight
    if settings.energy_kT is not None:
        counts = dataset.counts(elements)
        reference, *_ = np.linalg.lstsq(counts, dataset.energy, rcond=None)
        per_atom = (dataset.energy - counts @ reference) / dataset.n_atoms
        excess = per_atom - per_atom.min()
        weights *= np.maximum(np.exp(-excess / settings.energy_kT), settings.energy_min_weight)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("structure weights must be finite and non-negative")
    if not weights.any():
        raise ValueError("all structure weights are zero")
    return weights


# ---------------------------------------------------------------------- normal equations

class _TermAccumulator:
    """Normal equations of one loss term, accumulated in chunks of rows (BLAS syrk)."""

    def __init__(self, n_params, buffer):
        self.gram = np.zeros((n_params, n_params), order="F")  # upper triangle until finish()
        self.rhs = np.zeros(n_params)
        self.yy = 0.0
        self.rows = 0
        self.weight = 0.0
        self._buffer = buffer  # [chunk_rows, n_params] scratch, may be shared sequentially
        self._used = 0

    def add(self, a, y, w):
        """Rows ``a`` [k, <= n_params] (missing trailing columns are zero), targets y [k],
        one weight w for all k rows."""
        if w == 0 or len(y) == 0:
            return
        k, ncol = a.shape
        self.rhs[:ncol] += w * (a.T @ y)
        self.yy += w * float(y @ y)
        self.rows += k
        self.weight += w * k
        sw = np.sqrt(w)
        if k > len(self._buffer):
            block = np.zeros((k, self.gram.shape[0]))
            block[:, :ncol] = sw * a
            self._syrk(block)
            return
        if self._used + k > len(self._buffer):
            self.flush()
        rows = self._buffer[self._used:self._used + k]
        rows[:, :ncol] = sw * a
        rows[:, ncol:] = 0.0
        self._used += k

    def flush(self):
        if self._used:
            self._syrk(self._buffer[:self._used])
            self._used = 0

    def _syrk(self, block):
        # gram += block.T @ block on the upper triangle; block.T is Fortran-contiguous
        self.gram = scipy.linalg.blas.dsyrk(1.0, block.T, beta=1.0, c=self.gram, trans=0,
                                            lower=0, overwrite_c=1)

    def finish(self):
        self.flush()
        self._buffer = None
        # syrk filled the upper triangle and never touches the zeros below it, so U + U^T is
        # the symmetric Gram with a doubled diagonal: one pass instead of triu copies
        upper = self.gram
        self.gram = None
        gram = np.add(upper.T, upper, out=np.empty(upper.shape))
        gram[np.diag_indices_from(gram)] = np.diag(upper)
        return {"gram": gram, "rhs": self.rhs, "yy": self.yy,
                "rows": self.rows, "weight": self.weight}


def _add_scaled(out, scale, x):
    """out += scale * x in place for C-contiguous arrays: BLAS axpy, no temporary of the full
    size (these are the p x p Grams, built a few hundred times during the selection)."""
    if out.flags.c_contiguous and x.flags.c_contiguous and out.dtype == x.dtype == np.float64:
        scipy.linalg.blas.daxpy(x.ravel(), out.ravel(), a=scale)
    else:
        out += scale * x


@dataclass
class NormalEquations:
    """Per term t: gram A^T W A, rhs A^T W y, yy y^T W y, rows, weight = sum of row weights.

    Parameters are [c_1..c_nf, E0_1..E0_ne] (ne = 0 when E0 is given)."""

    terms: dict
    n_functions: int
    n_e0: int

    def __add__(self, other):
        terms = {}
        for t in set(self.terms) | set(other.terms):
            a, b = self.terms.get(t), other.terms.get(t)
            if a is None or b is None:
                terms[t] = a or b
            else:
                terms[t] = {k: a[k] + b[k] for k in a}
        return NormalEquations(terms, self.n_functions, self.n_e0)

    def __sub__(self, other):
        negated = {t: {k: -v for k, v in d.items()} for t, d in other.terms.items()}
        return self + NormalEquations(negated, other.n_functions, other.n_e0)

    @property
    def present(self):
        return [t for t in TERMS if t in self.terms and self.terms[t]["weight"] > 0]

    def combined(self, tau, minus=None):
        """(G, b, yy, rows) of the loss with term weights ``tau`` (energy weight 1); with
        ``minus`` (a part of these data), of the data without that part."""
        p = self.n_functions + self.n_e0
        G, b, yy, rows = np.zeros((p, p)), np.zeros(p), 0.0, 0
        for t in self.present:
            d = self.terms[t]
            m = minus.terms.get(t) if minus is not None else None
            weight = d["weight"] - (m["weight"] if m else 0.0)
            scale = tau.get(t, 1.0) / weight if weight > 0 else 0.0
            if scale == 0:
                continue
            _add_scaled(G, scale, d["gram"])
            b += scale * d["rhs"]
            yy += scale * d["yy"]
            rows += d["rows"]
            if m:
                _add_scaled(G, -scale, m["gram"])
                b -= scale * m["rhs"]
                yy -= scale * m["yy"]
                rows -= m["rows"]
        return G, b, yy, rows

    def mse(self, term, params):
        """Weighted mean square error of ``term`` for parameter vectors params [k, p]."""
        d = self.terms[term]
        P = np.atleast_2d(params)
        quad = np.einsum("ij,ij->i", P @ d["gram"], P) - 2 * P @ d["rhs"] + d["yy"]
        return np.maximum(quad, 0.0) / d["weight"]


def zero_potential(potential):
    """The fixed part of the model: the same bonds and core repulsion without functions (the
    functions, with zero coefficients, would add nothing but their cost) and zero E0."""
    return ACEPotential(potential.elements, potential.bonds, potential.embeddings, [],
                        np.zeros((0, potential.coefficients.shape[1])),
                        e0=np.zeros(len(potential.elements)), basis_spec=potential.basis_spec,
                        min_distance=potential.min_distance)


def check_linear(potential):
    for i, emb in potential.embeddings.items():
        linear = (emb.ndensity == 1 and emb.npot == "FinnisSinclairShiftedScaled"
                  and abs(emb.fs_parameters[1] - 1.0) < 1e-12)
        if not linear:
            raise ValueError(f"the linear fit needs a linear embedding (ndensity 1, npot "
                             f"FinnisSinclairShiftedScaled, fs_parameters [1, 1]); element "
                             f"{potential.elements[i]} has {emb}")


def normal_equations(potential, dataset, weights, e0=None, num_threads=None,
                     chunk_rows=DEFAULT_CHUNK_ROWS, progress=None, parts=None, fixed_part=None):
    """Accumulate the normal equations of ``dataset`` for the linear ACE model ``potential``.

    ``weights`` [n_s]: structure weights. ``e0``: None to fit E0 (extra columns counting the
    atoms of each element), else [n_elements] fixed reference energies subtracted from the
    targets. The core-repulsion part of the model (if any) is subtracted from the targets;
    ``fixed_part`` (a potential on the same bonds, any embedding) replaces it as the part of
    the model that is subtracted (the variable projection of ace.fitting.nonlinear passes the
    model without its first, linear density).
    ``parts`` [n_s] (optional): an integer part per structure; then a list of NormalEquations,
    one per part (0..max), is returned (the row buffers are shared, parts are done in turn).
    """
    check_linear(potential)
    dataset.check_elements(potential.elements)
    nf, n_el = potential.n_functions, len(potential.elements)
    ne = n_el if e0 is None else 0
    evaluator = Evaluator(potential)
    if fixed_part is not None:
        offset = Evaluator(fixed_part)
    else:
        offset = Evaluator(zero_potential(potential)) if potential.has_core_repulsion else None
    context = {
        "potential": potential, "dataset": dataset, "evaluator": evaluator, "offset": offset,
        "counts": dataset.counts(potential.elements), "num_threads": num_threads, "ne": ne,
        "e0": np.zeros(n_el) if e0 is None else np.asarray(e0, dtype=float),
        "has_forces": dataset.has_forces, "has_stress": dataset.has_stress,
        "volumes": dataset.volumes,
    }
    buffers = {t: np.empty((max(1, chunk_rows) if t == "forces" else 256, nf + ne)) for t in TERMS}
    part_of = np.zeros(len(dataset), dtype=np.int64) if parts is None else np.asarray(parts)
    n_parts = int(part_of.max()) + 1 if len(part_of) else 1
    order = np.argsort(part_of, kind="stable")
    if progress is not None:
        order = progress(order, "design rows")
    results, acc, current = [], None, -1
    for s in order:
        while current < part_of[s]:
            if acc is not None:
                results.append(_finish(acc, nf, ne))
            acc = {t: _TermAccumulator(nf + ne, buffers[t]) for t in TERMS}
            current += 1
        if weights[s] != 0:
            _add_structure(context, acc, s, weights[s])
    while len(results) < n_parts:
        if acc is None:
            acc = {t: _TermAccumulator(nf + ne, buffers[t]) for t in TERMS}
        results.append(_finish(acc, nf, ne))
        acc = None
    return results[0] if parts is None else results


def _finish(acc, nf, ne):
    terms = {t: a.finish() for t, a in acc.items()}
    return NormalEquations({t: v for t, v in terms.items() if v["rows"]}, nf, ne)


def _add_structure(ctx, acc, s, w):
    """Add the energy, force and stress rows of structure ``s`` with weight ``w``."""
    data, potential = ctx["dataset"], ctx["potential"]
    sl = data.atom_slice(s)
    n = sl.stop - sl.start
    nf = potential.n_functions
    structure = Structure(potential, data.numbers[sl], data.positions[sl], data.cells[s],
                          data.pbc[s])
    try:
        nl = ctx["evaluator"].neighbours(structure, ctx["num_threads"])
        rows = ctx["evaluator"].design_rows(structure, ctx["num_threads"], neighbour_list=nl)
        fixed = ctx["offset"].compute(structure, ctx["num_threads"], neighbour_list=nl) \
            if ctx["offset"] else None
    except (ValueError, FloatingPointError) as exc:
        raise ValueError(f"{data.names[s]}: {exc}") from exc
    counts = ctx["counts"][s]
    energy = data.energy[s] - counts @ ctx["e0"] - (fixed.energy if fixed else 0.0)
    a = np.concatenate([rows.energy, counts]) if ctx["ne"] else rows.energy
    acc["energy"].add(a[None, :] / n, np.array([energy / n]), w)
    if ctx["has_forces"][s]:
        target = data.forces[sl] - (fixed.forces if fixed else 0.0)
        acc["forces"].add(rows.forces.reshape(3 * n, nf), target.reshape(-1), w)
    volume = ctx["volumes"][s]
    if ctx["has_stress"][s] and volume > 0:
        d = rows.strain_derivative
        a = (0.5 * (d + d.transpose(1, 0, 2)) / volume).reshape(9, nf)
        target = data.stress[s]
        if fixed:
            fd = fixed.strain_derivative
            target = target - 0.5 * (fd + fd.T) / volume
        acc["stress"].add(a, target.reshape(-1), w)


# ---------------------------------------------------------------------- the ridge solve

class RidgeSystem:
    """The combined normal equations with E0 eliminated and columns standardised.

    E0 columns are eliminated by a Schur complement (they are not penalised); functions whose
    column is zero on the data ("unused") get coefficient 0.
    """

    def __init__(self, G, b, yy, rows, n_functions, n_e0, prior=None):
        """``G`` is used as work space (it is modified): pass a matrix of your own, such as
        the one :meth:`NormalEquations.combined` returns. ``prior``: None for the scale-free
        ridge (each coefficient penalised by its column's own weight in the data, i.e. a
        uniform ridge on standardised columns), else [n_functions] relative prior weights
        (:func:`smoothness_prior`): coefficient k is penalised by prior[k] times the mean
        diagonal of the data, so functions the data barely see are held small rather than
        set free."""
        nf, ne = n_functions, n_e0
        self.nf, self.ne, self.rows = nf, ne, rows
        Gcc, bc = G[:nf, :nf], b[:nf]
        self.e0_rank = ne
        if ne:
            Gee, Gec, be = G[nf:, nf:], G[nf:, :nf], b[nf:]
            Gee_inv = np.linalg.pinv(Gee, hermitian=True)
            self.e0_rank = int(np.linalg.matrix_rank(Gee, hermitian=True))
            self._e0_from = (Gee_inv @ be, Gee_inv @ Gec)  # E0 = u - K c
            # in place (G is ours), in blocks of rows: no temporary of the full size
            for r in range(0, nf, 512):
                Gcc[r:r + 512] -= Gec[:, r:r + 512].T @ self._e0_from[1]
            br = bc - Gec.T @ self._e0_from[0]
            yy = yy - be @ self._e0_from[0]
        else:
            br = bc
        diag = np.diag(Gcc).copy()
        self.active = diag > RANK_TOLERANCE * max(diag.max(initial=0.0), 1e-300)
        if prior is not None:
            diag = np.mean(diag[self.active]) * np.asarray(prior, dtype=float)
        # the penalty of coefficient k is l2 * diagonal[k] (in the units of the loss)
        self.diagonal = np.where(self.active, diag, 0.0)
        self.scale = 1.0 / np.sqrt(diag[self.active])
        # standardised Gram, contiguous (the factorisations copy it as one block); built in
        # place where possible, as it is the largest work matrix
        Gs = Gcc[np.ix_(self.active, self.active)] if not self.active.all() else \
            (Gcc if ne == 0 else np.ascontiguousarray(Gcc))
        Gs *= self.scale[:, None]
        Gs *= self.scale[None, :]
        self.Gs = Gs
        self.bs = br[self.active] * self.scale
        self.yy = yy
        self._eig = None

    @property
    def n_unused(self):
        return int(self.nf - self.active.sum())

    def eig(self):
        if self._eig is None:
            # one BLAS thread, as spectrum(): 2000 functions on the shared 2-core machine at
            # load 12: 4.8 s wall on one thread, 13.2 s on two (LAPACK's divide and conquer)
            with threadpool_limits(1, user_api="blas"):
                values, vectors = scipy.linalg.eigh(self.Gs, driver="evd", check_finite=False)
            self._eig = (np.maximum(values, 0.0), vectors)
        return self._eig

    def spectrum(self):
        """(numerical rank, condition number) of the standardised design matrix (E0 projected
        out). The rank counts singular values above 1e-6 of the largest; the condition number
        is that of the part within the rank (the rest is fixed by the ridge)."""
        if self._eig is None:
            # one BLAS thread: the reduction to tridiagonal form is mostly matrix-vector work,
            # where OpenBLAS's threads synchronise more than they compute (2501 parameters on
            # the shared 2-core machine at load 5: 1.5 s on one thread, 5 s on two)
            with threadpool_limits(1, user_api="blas"):
                values = scipy.linalg.eigvalsh(self.Gs, check_finite=False)
        else:
            values = self._eig[0]
        top = max(values.max(initial=0.0), 1e-300)
        kept = values[values > RANK_TOLERANCE * top]
        smallest = kept.min() if kept.size else top
        return int(kept.size) + self.e0_rank, float(np.sqrt(top / smallest))

    def solve(self, l2):
        """Full parameter vector [c, E0] for the relative ridge strength ``l2``."""
        # Gs is symmetric, so its transpose (a Fortran-ordered view) is the same matrix and
        # LAPACK factorises the copy in place instead of transposing it once more
        return self._params(solve_symmetric(self.Gs.T, self.bs, shift=l2, eigen=self.eig,
                                            standardised=True))

    def _params(self, cs):
        c = np.zeros(self.nf)
        c[self.active] = cs * self.scale
        if not self.ne:
            return c
        u, K = self._e0_from
        return np.concatenate([c, u - K @ c])

    def gcv(self, l2_values):
        """Generalised cross-validation score of each l2: rows * RSS / (rows - dof)^2."""
        values, vectors = self.eig()
        beta2 = (vectors.T @ self.bs) ** 2
        scores = []
        for l2 in l2_values:
            rss = self.yy - np.sum(beta2 * (values + 2 * l2) / (values + l2) ** 2)
            dof = np.sum(values / (values + l2)) + self.e0_rank
            scores.append(self.rows * max(rss, 0.0) / max(self.rows - dof, 1.0) ** 2)
        return np.array(scores)


def solve_symmetric(A, b, shift=0.0, eigen=None, standardised=False):
    """x with (A + shift D) x = b for a symmetric positive semi-definite A (not modified), D
    its diagonal: ``shift`` is a relative ridge.

    The system is solved scaled to a unit diagonal (columns whose diagonal is zero get x = 0),
    so that parameters of very different sizes solve alike; ``standardised``: A has been
    scaled so already (D = I, zero columns removed). Cholesky; where it fails (the matrix is
    singular to working precision) the eigenvectors of the scaled A, ``eigen() -> (values,
    vectors)`` when given (a cache), give the solution: with ``shift`` > 0 the same unique
    one, without it the least-squares solution of least norm (eigenvalues below
    RANK_TOLERANCE x the largest dropped). The linear fit's ridge solves and the variable
    projection of the nonlinear fit both solve here.
    """
    A = np.asarray(A)
    if not standardised:
        diagonal = np.diag(A).copy()
        active = diagonal > 0
        scale = 1.0 / np.sqrt(diagonal[active])
        x = np.zeros_like(b)
        x[active] = scale * solve_symmetric(
            A[np.ix_(active, active)] * scale[:, None] * scale[None, :], b[active] * scale,
            shift, standardised=True)
        return x
    M = np.array(A, order="F")
    M[np.diag_indices_from(M)] += shift
    try:
        factor = scipy.linalg.cho_factor(M, check_finite=False, overwrite_a=True)
        return scipy.linalg.cho_solve(factor, b, check_finite=False)
    except np.linalg.LinAlgError:
        values, vectors = eigen() if eigen is not None else scipy.linalg.eigh(A)
    shifted = values + shift
    floor = RANK_TOLERANCE * max(values.max(initial=0.0), 1e-300) if shift == 0 else 0.0
    keep = shifted > floor
    if not keep.all():
        values, vectors, shifted = values[keep], vectors[:, keep], shifted[keep]
    return vectors @ ((vectors.T @ b) / shifted)


def _tau(forces, stress):
    return {"energy": 1.0, "forces": forces, "stress": stress}


class CrossValidation:
    """Validation errors of candidate (tau_F, tau_S, lambda) from per-fold normal equations.

    ``folds``: NormalEquations of disjoint parts of the training data; ``validate``: the indices
    of the folds that are held out in turn (all of them for K-fold cross-validation, the last
    one for a single validation split). For a held-out fold k the model is solved on the sum of
    the other folds and its error on fold k comes from fold k's own normal equations, so no
    design rows are needed again. The RMSE of each term is pooled over the held-out folds.
    """

    def __init__(self, folds, validate, num_threads=None, prior=None):
        self.folds = folds
        self.validate = list(validate)
        self.total = folds[0]
        for fold in folds[1:]:
            self.total = self.total + fold
        self.terms = [t for t in self.total.present
                      if all(t in folds[k].present for k in self.validate)]
        self.results = {}  # (forces, stress, l2) -> {term: rmse}
        self.num_threads = num_threads
        self.prior = prior  # relative prior weights of the ridge (RidgeSystem), or None

    def evaluate(self, candidates):
        """Validation RMSE per term of each (forces, stress, l2) candidate (cached)."""
        todo = {}
        for forces, stress, l2 in candidates:
            if (forces, stress, l2) not in self.results:
                todo.setdefault((forces, stress), []).append(l2)
        for (forces, stress), l2_values in todo.items():
            errors = self._map_folds(lambda k: self._held_out(k, forces, stress, l2_values))
            sse = {t: np.zeros(len(l2_values)) for t in self.terms}
            weight = {t: 0.0 for t in self.terms}
            for k, fold_sse in zip(self.validate, errors):  # in fold order: reproducible sums
                for t in self.terms:
                    sse[t] += fold_sse[t]
                    weight[t] += self.folds[k].terms[t]["weight"]
            for j, l2 in enumerate(l2_values):
                self.results[(forces, stress, l2)] = {
                    t: float(np.sqrt(sse[t][j] / weight[t])) for t in self.terms}

    def _held_out(self, k, forces, stress, l2_values):
        """Weighted squared error of each term on fold k for each l2, solved without fold k."""
        system = RidgeSystem(*self.total.combined(_tau(forces, stress), self.folds[k]),
                             self.total.n_functions, self.total.n_e0, self.prior)
        params = np.array([system.solve(l2) for l2 in l2_values])
        return {t: self.folds[k].mse(t, params) * self.folds[k].terms[t]["weight"]
                for t in self.terms}

    def _map_folds(self, work):
        """``work(k)`` for every held-out fold, one fold per thread with single-threaded BLAS.

        The folds are independent, so this keeps every core busy without synchronising BLAS
        threads inside each factorisation; on a loaded machine that synchronisation made
        2-thread Cholesky factorisations 4-17 times slower than one thread (measured on a
        shared 2-core machine), while folds in parallel lose nothing to it. Memory: one fold
        system (2-3 matrices of the basis size squared) per thread.
        """
        workers = min(len(self.validate), effective_n_threads(self.num_threads))
        if workers < 2:
            return [work(k) for k in self.validate]
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(work, self.validate))

    def scored(self):
        """All evaluated candidates with their score: the sum over terms of RMSE divided by the
        best RMSE of that term among the candidates (scale-free, lower is better)."""
        best = {t: min(r[t] for r in self.results.values()) for t in self.terms}
        rows = []
        for (forces, stress, l2), rmse in self.results.items():
            score = sum(rmse[t] / max(best[t], 1e-300) for t in self.terms)
            rows.append({"forces": forces, "stress": stress, "l2": l2,
                         **{f"rmse_{t}": rmse[t] for t in self.terms}, "score": float(score)})
        return sorted(rows, key=lambda r: r["score"])


# The search lattice of the cross-validation: tau_F in half decades, lambda in decades. The
# coarse lines use every second point of each (tau_F 1e-4..1 a decade apart, lambda 1e-11..1e-3
# two decades apart); the fine steps may go half a step beyond them.
FORCES_LATTICE = tuple(10.0 ** (k / 2) for k in range(-9, 2))
L2_LATTICE = tuple(10.0 ** k for k in range(-12, -1))
STRESS_GRID = tuple(10.0 ** k for k in range(-3, 2))


def lattice_search(cv, forces, l2, stress, start=None):
    """Minimise the cross-validation score over the lattice ``forces`` x ``l2`` (sorted
    tuples; a single value for a fixed one) at the stress weight ``stress``.

    1. Coarse, by coordinate descent on every second lattice point: a line in lambda at the
       starting tau_F, then a line in tau_F at the best lambda, and so on until both lines
       through the best point have been evaluated.
    2. Fine, by pattern search on the whole lattice (one step is half a decade in tau_F, a
       decade in lambda): from the best point to the best of its neighbours while that
       improves, until the best point is the best of its 3 x 3 box.

    On the mlearn Mo and Si data this visits 17 candidates where the full coarse grid and the
    3 x 3 box around its optimum (the search before) visit 33, and picks the same; each costs
    one Cholesky factorisation per fold (a lambda line shares one set of fold systems).
    Returns the best row of ``cv.scored()`` on the lattice.
    """
    def best():
        # the score's scale (best RMSE of each term) is over the candidates seen so far, so the
        # best point is looked up again after every batch
        return next(row for row in cv.scored() if row["stress"] == stress
                    and row["forces"] in forces and row["l2"] in l2)

    def where(row):
        return forces.index(row["forces"]), l2.index(row["l2"])

    coarse_f = forces[1::2] if len(forces) > 2 else forces
    coarse_l = l2[1::2] if len(l2) > 2 else l2
    f0 = start if start in coarse_f else coarse_f[len(coarse_f) // 2]
    lines = set()
    i, j = forces.index(f0), None
    while True:
        if ("l2", i) not in lines:
            lines.add(("l2", i))
            cv.evaluate([(forces[i], stress, value) for value in coarse_l])
        elif ("forces", j) not in lines:
            lines.add(("forces", j))
            cv.evaluate([(value, stress, l2[j]) for value in coarse_f])
        else:
            break
        i, j = where(best())
    # fine: the axis neighbours first; the diagonal ones only where those do not improve, so
    # the final point is the best of its whole 3 x 3 box (a valley running diagonally to the
    # axes is followed as well)
    done = set()
    while True:
        for moves in (((-1, 0), (1, 0), (0, -1), (0, 1)), ((-1, -1), (-1, 1), (1, -1), (1, 1))):
            steps = [(i + di, j + dj) for di, dj in moves]
            steps = [(a, b) for a, b in steps if 0 <= a < len(forces) and 0 <= b < len(l2)
                     and (a, b) not in done]
            done.update(steps)
            cv.evaluate([(forces[a], stress, l2[b]) for a, b in steps])
            point = where(best())
            moved, (i, j) = point != (i, j), point
            if moved:
                break
        else:
            break
    return best()


def select_hyperparameters(cv, settings, has_stress, log=None):
    """Staged search of (tau_F, tau_S, lambda) minimising the cross-validation score.

    tau_F and lambda by :func:`lattice_search` (starting from the default tau_F); then tau_S
    (when the data have stresses and its weight is "auto") over 1e-3..10 at the best tau_F,
    lambda.
    """
    fixed_f = None if settings.forces == "auto" else float(settings.forces)
    fixed_l = None if settings.l2 == "auto" else float(settings.l2)
    if "forces" not in cv.terms:
        fixed_f = fixed_f if fixed_f is not None else 0.0
    stress = (DEFAULT_STRESS_WEIGHT if settings.stress == "auto" else float(settings.stress)) \
        if has_stress else 0.0
    forces = FORCES_LATTICE if fixed_f is None else (fixed_f,)
    l2 = L2_LATTICE if fixed_l is None else (fixed_l,)
    best = lattice_search(cv, forces, l2, stress, start=DEFAULT_FORCES_WEIGHT)
    if has_stress and settings.stress == "auto" and "stress" in cv.terms:
        cv.evaluate([(best["forces"], value, best["l2"]) for value in STRESS_GRID])
        best = cv.scored()[0]
    if log:
        units = {"energy": (1000, "meV/atom"), "forces": (1, "eV/Å"), "stress": (160.21766, "GPa")}
        shown = ", ".join(f"{t} {best[f'rmse_{t}'] * units[t][0]:.4g} {units[t][1]}"
                          for t in cv.terms)
        log(f"chosen by {'cross-validation' if len(cv.validate) > 1 else 'validation'}: "
            f"forces weight {best['forces']:.3g}, stress weight {best['stress']:.3g}, "
            f"l2 {best['l2']:.1e} (validation RMSE: {shown}; {len(cv.results)} candidates)")
    return best, cv.scored()


def select_by_gcv(neq, settings, log=None, prior=None):
    """tau_F, tau_S fixed (defaults for "auto"); lambda minimising generalised cross-validation."""
    forces = DEFAULT_FORCES_WEIGHT if settings.forces == "auto" else float(settings.forces)
    stress = DEFAULT_STRESS_WEIGHT if settings.stress == "auto" else float(settings.stress)
    if settings.l2 != "auto":
        return {"forces": forces, "stress": stress, "l2": float(settings.l2)}, []
    system = RidgeSystem(*neq.combined(_tau(forces, stress)), neq.n_functions, neq.n_e0, prior)
    scores = system.gcv(L2_GRID)
    k = int(np.argmin(scores))
    if log:
        log(f"chosen by GCV: l2 {L2_GRID[k]:.1e}")
    return ({"forces": forces, "stress": stress, "l2": L2_GRID[k]},
            [{"forces": forces, "stress": stress, "l2": l2, "gcv": float(g)}
             for l2, g in zip(L2_GRID, scores)])


E0_SOURCES = {
    "auto": "fitted as a free constant per element: absolute and cohesive energies of this "
            "potential are not physically meaningful (give e0 or use e0: isolated for that)",
    "given": "given in the config (free-atom reference energies)",
    "isolated": "the energies of the isolated-atom structures of the training data",
}


def check_e0_elements(reference, elements):
    """ValueError unless ``reference`` ({element: eV}) names exactly ``elements``."""
    missing = sorted(set(elements) - set(reference))
    unknown = sorted(set(reference) - set(elements))
    if missing or unknown:
        raise ValueError(f"e0: give exactly one reference energy per element {sorted(elements)}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {unknown}" if unknown else ""))


def resolve_e0(setting, dataset, elements, cutoff):
    """{element: eV} for an ``e0`` setting, or None when E0 is to be fitted ("auto")."""
    if setting == "auto":
        return None
    if setting == "isolated" or (isinstance(setting, dict) and "isolated" in setting):
        config_type = None if setting == "isolated" else setting["isolated"]
        return dataset.isolated_atom_energies(elements, cutoff, config_type)
    return dict(setting)


def smoothness_prior(potential, power):
    """[n_functions] relative prior weights of the ridge: ((1 + d_k) / (1 + mean d))^power
    with d_k = sum of n + l over the factors of function k (its radial and angular degree),
    or None for ``power`` None (the scale-free ridge of :class:`RidgeSystem`).

    Rough functions (high radial or angular degree) get a stronger penalty, so where the data
    say little they stay small instead of being fitted to the noise, and the potential stays
    smooth where no data were (the smoothness priors of ACEpotentials.jl play this part)."""
    if power is None:
        return None
    degree = np.array([sum(f.ns) + sum(f.ls) for f in potential.functions], dtype=float)
    if not len(degree):
        return None
    return ((1.0 + degree) / (1.0 + degree.mean())) ** float(power)


def fold_indices(dataset, n_folds, seed=0):
    """[n_s] fold of each structure: within each config_type a random permutation dealt out
    round-robin, so every fold has its share of every config_type."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(dataset), dtype=np.int64)
    start = 0
    for ctype in sorted(set(dataset.config_type.tolist())):
        members = np.flatnonzero(dataset.config_type == ctype)
        rng.shuffle(members)
        folds[members] = (start + np.arange(len(members))) % n_folds
        start += len(members)
    return folds


# ---------------------------------------------------------------------- the fit

def fit_linear(potential, train, settings=None, num_threads=None, chunk_rows=DEFAULT_CHUNK_ROWS,
               progress=None, log=None, metadata=None, committee=0, assemble=None):
    """Fit the coefficients (and E0) of ``potential`` (its current coefficients are ignored)
    to the dataset ``train``; returns a :class:`LinearFit`. ``committee`` >= 2: the potential
    carries that many members sampled from the Bayesian posterior of the coefficients
    (:mod:`ace.fitting.bayes`, from the same normal equations). ``assemble``: what computes
    the normal equations, called as :func:`normal_equations` (default: that function, in this
    process); :class:`ace.fitting.distributed.ChunkedAssembly` computes them chunk by chunk,
    on Dask workers or streamed from files (``train`` then may be an
    :class:`ace.stream.StreamedDataset`)."""
    settings = settings or LossSettings()
    assemble = assemble or normal_equations
    start = time.perf_counter()
    check_linear(potential)
    train.check_elements(potential.elements)
    elements = potential.elements
    e0_given = None
    reference = resolve_e0(settings.e0, train, elements, potential.cutoff)
    if reference is not None:
        check_e0_elements(reference, elements)
        e0_given = np.array([float(reference[e]) for e in elements])
    weights = structure_weights(train, settings, elements)
    prior = smoothness_prior(potential, settings.smoothness)

    n_parts = settings.n_parts(len(train))
    if n_parts > 1:
        if settings.method == "cv":
            parts = fold_indices(train, n_parts, settings.seed)
            validate = range(n_parts)
        else:
            parts = np.zeros(len(train), dtype=np.int64)
            parts[train.split_indices(settings.validation_fraction, settings.seed)[1]] = 1
            validate = [1]
        folds = assemble(potential, train, weights, e0_given, num_threads, chunk_rows,
                         progress, parts=parts)
        rows_done = time.perf_counter()
        cv = CrossValidation(folds, validate, num_threads, prior)
        del folds
        choice, table = select_hyperparameters(cv, settings, train.has_stress.any(), log)
        neq = cv.total
        validation_size = int(sum(np.sum(parts == k) for k in validate))
    else:
        neq = assemble(potential, train, weights, e0_given, num_threads, chunk_rows, progress)
        rows_done = time.perf_counter()
        choice, table = select_by_gcv(neq, settings, log, prior)
        validation_size = 0
    selected = time.perf_counter()
    tau = _tau(choice["forces"], choice["stress"])
    system = RidgeSystem(*neq.combined(tau), neq.n_functions, neq.n_e0, prior)
    params = system.solve(choice["l2"])
    if committee:
        system.eig()  # the committee needs the vectors: the spectrum then reuses the values
    rank, condition = system.spectrum()
    nf = potential.n_functions
    coefficients = params[:nf]
    e0 = params[nf:] if e0_given is None else e0_given
    if e0_given is None and system.e0_rank < len(elements):
        warnings.warn("the reference energies E0 are not determined by the data (the element "
                      "ratios do not vary); give e0 explicitly", stacklevel=2)
    report = {
        "n_functions": nf,
        "n_parameters": nf + neq.n_e0,
        "rank": rank,
        "condition": condition,
        "unused_functions": system.n_unused,
        "l2": float(choice["l2"]),
        "weights": {"energy": 1.0, "forces": float(choice["forces"]),
                    "stress": float(choice["stress"])},
        "method": (settings.method if validation_size else
                   "gcv" if settings.l2 == "auto" else "given"),
        "n_train_structures": len(train),
        "n_validation_structures": validation_size,
        "rows": {t: int(neq.terms[t]["rows"]) for t in neq.present},
        "e0": {el: float(v) for el, v in zip(elements, e0)},
        "e0_fitted": e0_given is None,
        "e0_source": E0_SOURCES[settings.e0 if isinstance(settings.e0, str) else
                                "isolated" if "isolated" in settings.e0 else "given"],
        "settings": asdict(settings),
        "seconds": round(time.perf_counter() - start, 2),
        # where the time goes: the design rows (the data), the selection (the basis size and
        # the number of candidates), the final solve with the spectrum (the basis size)
        "timings": {"design_rows": round(rows_done - start, 2),
                    "selection": round(selected - rows_done, 2),
                    "final_solve": round(time.perf_counter() - selected, 2)},
    }
    if table:
        report["candidates"] = len(table)
        report["selection"] = sorted(table, key=lambda r: r.get("score", r.get("gcv", 0)))[:10]
    if log:
        n_used = nf + neq.n_e0 - system.n_unused
        log(f"design: {nf} functions, numerical rank {rank} of {n_used}"
            + (" (the ridge fixes the rest)" if rank < n_used else "")
            + f", condition number {condition:.2e}"
            + (f", {system.n_unused} functions unused by the data" if system.n_unused else ""))
        times = report["timings"]
        log(f"times: design rows {times['design_rows']:.1f} s, selection {times['selection']:.1f} s"
            + (f" ({len(table)} candidates)" if table else "")
            + f", final solve {times['final_solve']:.1f} s")
    fitted = ACEPotential(elements, potential.bonds, potential.embeddings, potential.functions,
                          coefficients.reshape(-1, 1), e0=e0, basis_spec=potential.basis_spec,
                          min_distance=potential.min_distance,
                          metadata={**potential.metadata, **(metadata or {})})
    if committee:
        fitted.committee = bayes.committee(system, params, e0, committee)
        report["committee"] = {"members": committee,
                               **{k: v for k, v in fitted.committee.info.items() if k != "seed"}}
    penalty = choice["l2"] * system.diagonal
    return LinearFit(fitted, report, penalty)


def fit_committee(fit, train, n_members=bayes.DEFAULT_MEMBERS, seed=0, num_threads=None,
                  progress=None, assemble=None):
    """The potential of ``fit`` (a :class:`LinearFit`) with a committee, from the
    normal equations of its training data ``train`` rebuilt with the fit's weights
    (``assemble``: as in :func:`fit_linear`)."""
    report = fit.report
    potential = fit.potential
    settings = LossSettings(**report["settings"])
    prior = smoothness_prior(potential, settings.smoothness)
    weights = structure_weights(train, settings, potential.elements)
    e0_given = None if report["e0_fitted"] else potential.e0
    neq = (assemble or normal_equations)(potential, train, weights, e0_given, num_threads,
                                         progress=progress)
    tau = _tau(report["weights"]["forces"], report["weights"]["stress"])
    system = RidgeSystem(*neq.combined(tau), neq.n_functions, neq.n_e0, prior)
    params = potential.coefficients[:, 0]
    if neq.n_e0:
        params = np.concatenate([params, potential.e0])
    fitted = potential.copy()
    fitted.committee = bayes.committee(system, params, potential.e0, n_members, seed)
    fitted.validate()
    return fitted


def memory_estimate(n_params, n_terms, n_parts=1, chunk_rows=DEFAULT_CHUNK_ROWS,
                    max_atoms=0, n_functions=None, num_threads=1, total_atoms=0):
    """Bytes the linear fit needs (peak, approximately): the normal equations of each term for
    each part of the data (the cross-validation folds) and their sum, the solve's work
    matrices, the row buffers, the design rows of the largest structure, and the interpreter
    with the dataset."""
    nf = n_functions or n_params
    grams = n_terms * (n_parts + (1 if n_parts > 1 else 0)) * n_params ** 2 * 8
    # combined, reduced, standardised, factor, eigenvectors; the folds of the selection are
    # solved in parallel, each thread holding a combined, a standardised and a factor matrix
    workers = min(n_parts, max(num_threads, 1)) if n_parts > 1 else 1
    solve = max(5, 3 * workers) * n_params ** 2 * 8
    buffers = (chunk_rows + 2 * 256) * n_params * 8
    rows = (max_atoms * (4 + 3 * max(num_threads, 1)) + 18 * max(num_threads, 1)) * nf * 8
    base = 100 * 2**20 + total_atoms * 8 * 8  # Python, numpy, scipy, ASE; positions, forces
    return {"normal_equations": grams, "solve": solve, "row_buffers": buffers,
            "design_rows": rows, "python_and_data": base,
            "total": grams + solve + buffers + rows + base}
