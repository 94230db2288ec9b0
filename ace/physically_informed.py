"""Physically-informed ACE (PINN-style): a physical form whose parameters vary per atom with a
linear ACE expansion of the atom's environment.

  p_i = p0_(s_i) + m(q_i),  q_i = C_(s_i) B_i,      E = sum_i [E_i(R_i, p_i) + E0_(s_i)]

m is the identity (the unbounded potential) or, per parameter k with a half-width s_k
(``max_shift``), m_k(q) = s_k tanh(q / s_k): the local parameter stays within s_k of the
global one however far the environment lies from the data, with slope 1 at q = 0.
With a ``descriptor_range`` (low_f, high_f per element, from the training atoms), B_if is
replaced by its soft clip c(B_if): the identity inside [low, high], and beyond high
high + w tanh((B - high) / w) (likewise below low), w = margin (high - low): the correction
is not extrapolated past the data's range of each function, and the formulas below hold with
B, T and the force weights W multiplied through by c'(B) (c depends on the geometry only).

B_i are the raw B-functions of atom i of a linear ACE basis (the *descriptor*, an ACEPotential
whose coefficients are not used), C_s [n_params, n_functions] the coefficients of element s and
E_i the physical form's atomic energy (ace.physical), which depends on atom i's own parameters
and its neighbours' positions only. Then exactly (docs/physically-informed.md), with m', m''
the derivatives of m at q_i:
  forces, strain derivative = those of the form at fixed p  +  those of
      E_W = sum_i sum_f W_if B_if,   W_if = sum_k dE_i/dp_ik m'_ik C_(s_i)[k, f]
  dE/dC_s[k, f] = sum_(i in s) dE_i/dp_ik m'_ik B_if
and along a displacement g and strain D (delta_ij = g_j - g_i + D r_ij), with the tangents
T_if = D_delta B_if, t_il = sum_f C[l, f] T_if, the form's adjoint u, H, and
v_ik = u_ik + sum_l H_ikl m'_il t_il:
  d(D_delta E)/dC[k, f] = sum_i (m'_ik v_ik + dE_i/dp_ik m''_ik t_ik) B_if
                                + dE_i/dp_ik m'_ik T_if,
  d(D_delta E)/dp0_k = sum_i v_ik,
which gives the gradient of the force and stress terms of a loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace.evaluator import Evaluator
from ace.neighbours import check_not_coincident, checked_neighbour_list
from ace.physical import PhysicalForm, adjoint_u, per_atom
from ace.physical.potential import PhysicalPotential
from ace.potential import FORMAT_NAME, FORMAT_VERSION, UNITS, ACEPotential, PotentialFileError

KIND = "physically-informed"
DEFAULT_CLIP_MARGIN = 0.1  # the soft clip's width, relative to the training range of B_f


class PhysicallyInformedPotential(PhysicalPotential):
    """A physical form with per-atom parameters p_i = p0 + C B_i (see the module doc).

    ``form``: an ace.physical form; ``descriptor``: the ACEPotential giving B;
    ``base_parameters`` p0 [n_elements, n_params]; ``coefficients`` C [n_elements, n_params,
    n_columns] (column f - first function of the element, as Evaluator.basis_values);
    ``e0`` [n_elements]; ``tau`` the penalty weight it was fitted with (kept for the record);
    ``max_shift`` [n_elements, n_params] the half-widths s of the bounded map (inf: that
    parameter unbounded; None: all unbounded); ``descriptor_range`` [n_elements, 2, n_columns]
    (low, high) of each B column over the training atoms and ``clip_margin`` the soft clip's
    width relative to high - low (None: B unclipped).
    """

    kind = KIND

    def __init__(self, form, descriptor, base_parameters, coefficients=None, e0=None, tau=0.0,
                 metadata=None, max_shift=None, descriptor_range=None,
                 clip_margin=DEFAULT_CLIP_MARGIN):
        self.form = form
        self.descriptor = descriptor
        self.elements = list(descriptor.elements)
        n_el = len(self.elements)
        self.base_parameters = np.array(base_parameters, dtype=float).reshape(n_el, form.n_params)
        for e, row in zip(self.elements, self.base_parameters):
            try:
                form.check(row)
            except ValueError as exc:
                raise ValueError(f"base parameters of {e}: {exc}") from None
        shape = (n_el, form.n_params, self.n_columns)
        self.coefficients = (np.zeros(shape) if coefficients is None
                             else np.array(coefficients, dtype=float))
        if self.coefficients.shape != shape:
            raise ValueError(f"coefficients must have shape {shape} (elements, parameters of "
                             f"{form.name}, descriptor functions), got {self.coefficients.shape}")
        self.e0 = np.zeros(n_el) if e0 is None else np.array(e0, dtype=float).reshape(n_el)
        self.tau = float(tau)
        self.metadata = dict(metadata or {})
        self.max_shift = (np.full((n_el, form.n_params), np.inf) if max_shift is None
                          else np.array(max_shift, dtype=float).reshape(n_el, form.n_params))
        if np.isnan(self.max_shift).any() or (self.max_shift <= 0).any():
            raise ValueError("max_shift: half-widths must be positive (inf: unbounded), got "
                             f"{self.max_shift.tolist()}")
        self.set_clip(descriptor_range, clip_margin)

    @property
    def n_columns(self):
        """Columns of B: the largest number of descriptor functions of an element."""
        counts = np.bincount([f.mu0 for f in self.descriptor.functions],
                             minlength=len(self.elements))
        return int(max(counts.max(initial=0), 1))

    @property
    def n_functions_per_element(self):
        return np.bincount([f.mu0 for f in self.descriptor.functions],
                           minlength=len(self.elements))

    @property
    def cutoff(self):
        return max(self.form.cutoff, self.descriptor.cutoff)

    @property
    def n_parameters(self):
        """Parameters: C over every element's functions and p0 (E0 not counted, as for the
        other potentials)."""
        return int(self.form.n_params * self.n_functions_per_element.sum()
                   + self.base_parameters.size)

    def copy(self):
        return PhysicallyInformedPotential(self.form, self.descriptor.copy(),
                                           self.base_parameters.copy(), self.coefficients.copy(),
                                           self.e0.copy(), self.tau, dict(self.metadata),
                                           self.max_shift.copy(),
                                           None if self.descriptor_range is None
                                           else self.descriptor_range.copy(), self.clip_margin)

    def set_clip(self, descriptor_range, margin=DEFAULT_CLIP_MARGIN):
        """Clip B to ``descriptor_range`` [n_elements, 2, n_columns] (low, high) with the soft
        width ``margin`` (high - low); None: unclipped."""
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) \
                or not (np.isfinite(margin) and margin > 0):
            raise ValueError(f"descriptor_range margin must be a positive number, got {margin!r}")
        self.clip_margin = float(margin)
        self.descriptor_range = None
        if descriptor_range is not None:
            rng = np.array(descriptor_range, dtype=float)
            shape = (len(self.elements), 2, self.n_columns)
            if rng.shape != shape or not np.isfinite(rng).all() or (rng[:, 1] < rng[:, 0]).any():
                raise ValueError(f"descriptor_range must hold finite (low <= high) rows of shape "
                                 f"{shape}, got shape {rng.shape}")
            self.descriptor_range = rng

    def clipped_descriptor(self, species, basis_values):
        """(c(B) [n_atoms, n_columns], c'(B) or None when B is not clipped)."""
        if self.descriptor_range is None:
            return basis_values, None
        species = np.asarray(species)
        low = self.descriptor_range[species, 0]
        high = self.descriptor_range[species, 1]
        width = self.clip_margin * (high - low)
        safe = np.where(width > 0, width, 1.0)
        # beyond high (or below low) by x: the edge plus w tanh(x / w); constant columns
        # (width 0) pass unchanged
        edge = np.where(basis_values > high, high, np.where(basis_values < low, low,
                                                             basis_values))
        t = np.where(width > 0, np.tanh((basis_values - edge) / safe), 0.0)
        outside = (basis_values != edge) & (width > 0)
        values = np.where(outside, edge + safe * t, basis_values)
        return values, np.where(outside, 1.0 - t * t, 1.0)

    @property
    def bounded(self):
        return bool(np.isfinite(self.max_shift).any())

    def parameter_shifts(self, species, basis_values):
        """(Delta p = m(q), m'(q), m''(q)) [n_atoms, n_params] with q_i = C_(s_i) B_i."""
        species = np.asarray(species)
        q = np.einsum("ikf,if->ik", self.coefficients[species], basis_values)
        if not self.bounded:
            return q, np.ones_like(q), np.zeros_like(q)
        half_width = self.max_shift[species]
        finite = np.isfinite(half_width)
        safe = np.where(finite, half_width, 1.0)
        t = np.tanh(np.where(finite, q / safe, 0.0))
        slope = 1.0 - t * t
        return (np.where(finite, safe * t, q), np.where(finite, slope, 1.0),
                np.where(finite, -2.0 * t * slope / safe, 0.0))

    def local_parameters(self, species, basis_values):
        """p_i = p0_(s_i) + m(C_(s_i) c(B_i)) [n_atoms, n_params] of the raw B-functions."""
        species = np.asarray(species)
        values, _ = self.clipped_descriptor(species, basis_values)
        return self.base_parameters[species] + self.parameter_shifts(species, values)[0]

    def evaluator(self):
        return PhysicallyInformedEvaluator(self)

    def to_dict(self):
        return potential_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        return potential_from_dict(data)

    def describe(self):
        """What ``ace info`` prints (JSON-friendly)."""
        meta = self.metadata or {}
        names = self.form.parameter_names
        counts = self.n_functions_per_element
        return {"kind": self.kind, "form": self.form.name, "elements": self.elements,
                "cutoff": self.cutoff, "cutoff_width": self.form.cutoff_width,
                "n_parameters": self.n_parameters, "tau": self.tau,
                "max_shift": shift_mapping(self),
                "descriptor": {"functions": {e: int(n) for e, n in zip(self.elements, counts)},
                               "cutoff": self.descriptor.cutoff},
                "parameters": {e: dict(zip(names, map(float, row)))
                               for e, row in zip(self.elements, self.base_parameters)},
                "coefficient_norms": {e: dict(zip(names, map(float, np.linalg.norm(
                    self.coefficients[s], axis=1)))) for s, e in enumerate(self.elements)},
                "e0": dict(zip(self.elements, map(float, self.e0))),
                "provenance": {k: meta[k] for k in ("created", "ace_version") if k in meta},
                "metrics": meta.get("metrics") or {}}

    def __repr__(self):
        return (f"PhysicallyInformedPotential(form={self.form.name!r}, elements={self.elements}, "
                f"descriptor functions={len(self.descriptor.functions)}, tau={self.tau})")


@dataclass
class PhysicallyInformedResults:
    energy: float
    energies: np.ndarray  # [n_atoms] (E0 included)
    forces: np.ndarray  # [n_atoms, 3]
    strain_derivative: np.ndarray  # [3, 3]: dE/d(strain) = volume * stress
    parameters: np.ndarray  # [n_atoms, n_params]: the local parameters p_i
    basis_values: np.ndarray  # [n_atoms, n_columns]: c(B_i), the descriptor the parameters see
    parameter_derivatives: np.ndarray  # [n_atoms, n_params]: dE_i/dp_i
    shift_slope: np.ndarray  # [n_atoms, n_params]: m'(q_i)
    shift_curvature: np.ndarray  # [n_atoms, n_params]: m''(q_i)
    descriptor_slope: np.ndarray | None  # [n_atoms, n_columns]: c'(B_i); None: not clipped


class PhysicallyInformedEvaluator:
    """Energies, forces and strain derivatives of a PhysicallyInformedPotential, and the pieces
    of its exact parameter gradients (ace.fitting.physically_informed)."""

    def __init__(self, potential):
        self.potential = potential
        self.descriptor = Evaluator(potential.descriptor)

    def neighbours(self, structure, num_threads=None):
        return checked_neighbour_list(structure.positions, structure.cell, structure.pbc,
                                      self.potential.cutoff, num_threads)

    def check_distances(self, nl):
        check_not_coincident(nl)

    def compute(self, structure, num_threads=None, neighbour_list=None,
                basis_values=None) -> PhysicallyInformedResults:
        pot = self.potential
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        raw = (self.descriptor.basis_values(structure, num_threads, nl) if basis_values is None
               else basis_values)
        b, clip_slope = pot.clipped_descriptor(structure.species, raw)
        shift, slope, curvature = pot.parameter_shifts(structure.species, b)
        params = pot.base_parameters[structure.species] + shift
        physical = per_atom(pot.form, nl, structure.species, params,
                            num_threads=num_threads)
        weights = np.einsum("ik,ikf->if", physical.dE_dp * slope,
                            pot.coefficients[structure.species])
        if clip_slope is not None:
            weights *= clip_slope
        _, forces, strain = self.descriptor.weighted_forces(structure, weights, num_threads, nl)
        energies = physical.energies + pot.e0[structure.species]
        if not (np.isfinite(energies).all() and np.isfinite(physical.forces).all()
                and np.isfinite(forces).all()):
            raise FloatingPointError(
                "the physically-informed potential produced NaN or inf: local parameters "
                f"outside the physical form's domain? (ranges {params.min(axis=0)} .. "
                f"{params.max(axis=0)})")
        return PhysicallyInformedResults(float(energies.sum()), energies,
                                         physical.forces + forces, physical.virial + strain,
                                         params, b, physical.dE_dp, slope, curvature,
                                         clip_slope)

    def directional_gradient(self, structure, nl, results, displacement, strain,
                             num_threads=None):
        """Per atom, for delta_ij = g_j - g_i + strain @ r_ij (g = displacement) at the point of
        ``results`` (compute's): (v, w, T) with T [n_atoms, n_columns] the tangents of the
        descriptor the parameters see (c'(B) D_delta B), so that (module doc)
        d(D_delta E)/dp0_k = sum_i v_ik and
        d(D_delta E)/dC[k, f] = sum_i w_ik c(B)_if + dE_i/dp_ik m'_ik T_if."""
        pot = self.potential
        species = structure.species
        _, tangents = self.descriptor.basis_tangents(structure, displacement, strain,
                                                     num_threads, nl)
        if results.descriptor_slope is not None:
            tangents = tangents * results.descriptor_slope
        t = np.einsum("ilf,if->il", pot.coefficients[species], tangents)
        # u + H (m' t) in one tangent pass of the form's tape (no Hessian formed)
        v = adjoint_u(pot.form, nl, species, results.parameters, displacement, strain,
                      num_threads, parameter_tangent=results.shift_slope * t)
        w = results.shift_slope * v + results.parameter_derivatives * results.shift_curvature * t
        return v, w, tangents


# ----------------------------------------------------------------------------- file format

FILE_KEYS = ("kind", "format", "format_version", "units", "elements", "form", "cutoff",
             "cutoff_width", "parameter_names", "base_parameters", "e0", "tau", "coefficients",
             "descriptor", "metadata", "max_shift", "descriptor_range")
# absent: unbounded, unclipped (files before them)
OPTIONAL_KEYS = {"metadata", "max_shift", "descriptor_range"}


def shift_mapping(pot):
    """{element: {parameter: half-width}} of the bounded parameters (empty: unbounded)."""
    names = pot.form.parameter_names
    return {e: {k: float(v) for k, v in zip(names, row) if np.isfinite(v)}
            for e, row in zip(pot.elements, pot.max_shift) if np.isfinite(row).any()}


def potential_to_dict(pot):
    """The file's mapping: ``kind`` first (ace.io reads it from the second line)."""
    el, names = pot.elements, list(pot.form.parameter_names)
    counts = pot.n_functions_per_element
    return {
        "kind": KIND, "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "units": dict(UNITS), "elements": list(el), **pot.form.to_dict(),
        "parameter_names": names,
        "base_parameters": {e: [float(v) for v in row] for e, row in zip(el, pot.base_parameters)},
        "e0": {e: float(v) for e, v in zip(el, pot.e0)},
        "tau": float(pot.tau),
        # per element, one row per parameter over the element's descriptor functions
        "coefficients": {e: [[float(x) for x in pot.coefficients[s, p, :counts[s]]]
                             for p in range(len(names))] for s, e in enumerate(el)},
        "descriptor": pot.descriptor.to_dict(),
        "metadata": pot.metadata,
        **({"max_shift": shift_mapping(pot)} if pot.bounded else {}),
        **({"descriptor_range": range_mapping(pot)} if pot.descriptor_range is not None
           else {}),
    }


def range_mapping(pot):
    """{margin, ranges: {element: {low, high}}} over each element's descriptor functions."""
    counts = pot.n_functions_per_element
    return {"margin": pot.clip_margin,
            "ranges": {e: {"low": [float(x) for x in pot.descriptor_range[s, 0, :counts[s]]],
                           "high": [float(x) for x in pot.descriptor_range[s, 1, :counts[s]]]}
                       for s, e in enumerate(pot.elements)}}


def potential_from_dict(data):
    """The potential of a file's mapping; ValueError or PotentialFileError naming the key."""
    if not isinstance(data, dict):
        raise ValueError("the file does not hold a mapping")
    unknown = sorted(set(data) - set(FILE_KEYS))
    missing = sorted(set(FILE_KEYS) - set(data) - OPTIONAL_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in a {KIND} potential")
    if missing:
        raise ValueError(f"missing keys {missing} in a {KIND} potential")
    if data["kind"] != KIND or data["format"] != FORMAT_NAME:
        raise ValueError(f"not a {FORMAT_NAME} file of kind {KIND}")
    if data["format_version"] != FORMAT_VERSION:
        raise ValueError(f"format_version {data['format_version']!r} is not {FORMAT_VERSION}")
    if data["units"] != UNITS:
        raise ValueError(f"units {data['units']} are not supported (need {UNITS})")
    form = PhysicalForm(data["form"], data["cutoff"], data["cutoff_width"])
    names = list(form.parameter_names)
    if list(data["parameter_names"]) != names:
        raise ValueError(f"parameter_names {data['parameter_names']} differ from the "
                         f"{form.name} form's {names}")
    try:
        descriptor = ACEPotential.from_dict(data["descriptor"])
    except PotentialFileError as exc:
        raise ValueError(f"descriptor: {exc}") from None
    elements = [str(e) for e in data["elements"]]
    if elements != descriptor.elements:
        raise ValueError(f"elements {elements} differ from the descriptor's "
                         f"{descriptor.elements}")
    for key in ("base_parameters", "e0", "coefficients"):
        if not isinstance(data[key], dict) or sorted(data[key]) != sorted(elements):
            raise ValueError(f"{key} must map each element {elements} to its values")
    tau = float(data["tau"])
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite number >= 0, got {data['tau']!r}")
    pot = PhysicallyInformedPotential(form, descriptor,
                                      [data["base_parameters"][e] for e in elements],
                                      e0=[float(data["e0"][e]) for e in elements], tau=tau,
                                      metadata=data.get("metadata") or {},
                                      max_shift=shifts_from_mapping(data.get("max_shift") or {},
                                                                    elements, names))
    if not np.isfinite(pot.e0).all():
        raise ValueError("e0 must be finite")
    counts = pot.n_functions_per_element
    for s, e in enumerate(elements):
        rows = np.array(data["coefficients"][e], dtype=float)
        if rows.shape != (len(names), counts[s]) or not np.isfinite(rows).all():
            raise ValueError(f"coefficients of {e}: need {len(names)} rows (one per parameter) "
                             f"of {counts[s]} finite numbers (one per descriptor function), "
                             f"got shape {rows.shape}")
        pot.coefficients[s, :, :counts[s]] = rows
    if "descriptor_range" in data:
        pot.set_clip(*range_from_mapping(pot, data["descriptor_range"]))
    return pot


def range_from_mapping(pot, mapping):
    """(descriptor_range, margin) of the file's mapping (checked by set_clip); ValueError naming
    what is wrong."""
    elements, counts = pot.elements, pot.n_functions_per_element
    if not isinstance(mapping, dict) or set(mapping) != {"margin", "ranges"} \
            or not isinstance(mapping["ranges"], dict) \
            or sorted(mapping["ranges"]) != sorted(elements):
        raise ValueError(f"descriptor_range must be {{margin, ranges: {{element: {{low, "
                         f"high}}}}}} over the elements {elements}")
    rng = np.zeros((len(elements), 2, pot.n_columns))
    for s, e in enumerate(elements):
        row = mapping["ranges"][e]
        try:
            low, high = (np.array(row[k], dtype=float) for k in ("low", "high"))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"descriptor_range of {e}: low and high lists of numbers") from None
        if low.shape != (counts[s],) or high.shape != (counts[s],):
            raise ValueError(f"descriptor_range of {e}: low and high need {counts[s]} values "
                             "(one per descriptor function)")
        rng[s, 0, :counts[s]], rng[s, 1, :counts[s]] = low, high
    return rng, mapping["margin"]


def is_half_width(value):
    """A positive finite number (not a bool): a valid max_shift half-width or fraction."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and bool(np.isfinite(value)) and value > 0)


def shifts_from_mapping(mapping, elements, names):
    """The max_shift array of a file's {element: {parameter: half-width}} (others: inf)."""
    shifts = np.full((len(elements), len(names)), np.inf)
    if not isinstance(mapping, dict) or set(mapping) - set(elements):
        raise ValueError(f"max_shift must map elements of {elements} to {{parameter: "
                         f"half-width}}, got {mapping!r}")
    for s, e in enumerate(elements):
        row = mapping.get(e, {})
        if not isinstance(row, dict) or set(row) - set(names):
            raise ValueError(f"max_shift of {e}: a mapping of parameters of {names} to "
                             f"half-widths, got {row!r}")
        for k, value in row.items():
            if not is_half_width(value):
                raise ValueError(f"max_shift of {e}, {k}: a positive finite half-width, got "
                                 f"{value!r}")
            shifts[s, names.index(k)] = float(value)
    return shifts
