"""Potentials built on a physical form, saved in ace's checksummed YAML with a ``kind`` key.

``kind: traditional`` is one global parameter vector per element (:class:`TraditionalPotential`).
Every kind registers its class in :data:`POTENTIAL_KINDS`; ace.io dispatches on the ``kind``
written on the file's second line, and ACECalculator evaluates any of them through
``potential.evaluator()`` (an object with ``compute`` and ``check_distances`` like
ace.evaluator.Evaluator). A physical potential's energy is sum_i (E_i + E0[element of i]).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
from yaml import SafeLoader

from ace.limits import yaml_load_bounded
from ace.neighbours import check_not_coincident, checked_neighbour_list
from ace.physical import PhysicalForm, per_atom
from ace.potential import (CHECKSUM_PREFIX, PotentialFileError, read_checksummed,
                           write_checksummed)

KIND_LINE = re.compile(r"^kind: *([A-Za-z-]+) *$", re.M)


class PhysicalPotential:
    """Base of the potentials evaluated by a physical form (one per ``kind``)."""

    kind = None  # each subclass: its file kind; and an evaluator() method

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        body = read_checksummed(path, CHECKSUM_PREFIX, PotentialFileError, "ace potential")
        data = yaml_load_bounded(body, SafeLoader, path, PotentialFileError)
        if not isinstance(data, dict) or data.get("kind") != cls.kind:
            raise PotentialFileError(f"{path}: not a {cls.kind} potential (kind: "
                                     f"{data.get('kind') if isinstance(data, dict) else None})")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise PotentialFileError(f"{path}: {type(exc).__name__}: {exc}") from None

    def save(self, path):
        write_checksummed(path, CHECKSUM_PREFIX, self.to_dict())


def file_kind(text):
    """The ``kind`` of an ace potential file from its first lines (None: an ACE potential)."""
    lines = text.split("\n", 3)
    match = KIND_LINE.match(lines[1]) if len(lines) > 1 else None
    return match.group(1) if match else None


def _parameter_table(form, parameters, elements):
    """{element: [n_params] floats} checked against the form."""
    if not isinstance(parameters, dict) or sorted(parameters) != sorted(elements):
        raise ValueError(f"parameters must map each element {elements} to its "
                         f"{form.n_params} parameters, got keys "
                         f"{sorted(parameters) if isinstance(parameters, dict) else parameters!r}")
    table = {}
    for element in elements:
        values = parameters[element]
        if isinstance(values, dict):
            missing = [k for k in form.parameter_names if k not in values]
            extra = [k for k in values if k not in form.parameter_names]
            if missing or extra:
                raise ValueError(f"parameters of {element}: the {form.name} form needs "
                                 f"{list(form.parameter_names)} (missing {missing}, unknown {extra})")
            values = [values[k] for k in form.parameter_names]
        row = form.check(np.asarray(values, dtype=float))
        if row.shape != (form.n_params,):
            raise ValueError(f"parameters of {element}: {form.n_params} values expected")
        table[element] = row
    return table


class TraditionalPotential(PhysicalPotential):
    """A traditional potential: one global parameter vector of ``form`` per element and the
    free-atom energy E0 per element (multi-element forms are a later extension: one element)."""

    kind = "traditional"

    def __init__(self, elements, form, parameters, e0=None, metadata=None):
        elements = list(elements)
        if len(elements) != 1:
            raise ValueError(f"traditional potentials have one element for now, got {elements}")
        if not isinstance(form, PhysicalForm):
            raise ValueError(f"form must be an ace.physical.PhysicalForm, got {form!r}")
        self.elements = elements
        self.form = form
        self.parameters = _parameter_table(form, parameters, elements)
        e0 = np.zeros(len(elements)) if e0 is None else np.asarray(e0, dtype=float).reshape(-1)
        if e0.shape != (len(elements),) or not np.isfinite(e0).all():
            raise ValueError(f"e0 must hold one finite energy per element {elements}, got {e0}")
        self.e0 = e0
        self.metadata = dict(metadata or {})

    @property
    def cutoff(self):
        return self.form.cutoff

    @property
    def n_parameters(self):
        return self.form.n_params * len(self.elements)

    def parameter_rows(self, species):
        """[n_atoms, n_params]: each atom's element's parameters."""
        table = np.array([self.parameters[e] for e in self.elements])
        return table[np.asarray(species)]

    def evaluator(self):
        return PhysicalEvaluator(self)

    def to_dict(self):
        return {"kind": self.kind, "format": "ace-potential", "elements": self.elements,
                **self.form.to_dict(),
                "parameter_names": list(self.form.parameter_names),
                "parameters": {e: [float(x) for x in self.parameters[e]] for e in self.elements},
                "e0": {e: float(x) for e, x in zip(self.elements, self.e0)},
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data):
        for key in ("elements", "form", "cutoff", "cutoff_width", "parameters", "e0"):
            if key not in data:
                raise KeyError(f"a traditional potential needs the key {key!r}")
        form = PhysicalForm(data["form"], data["cutoff"], data["cutoff_width"])
        names = data.get("parameter_names", list(form.parameter_names))
        if list(names) != list(form.parameter_names):
            raise ValueError(f"parameter_names {names} differ from the {form.name} form's "
                             f"{list(form.parameter_names)}")
        elements = list(data["elements"])
        e0 = data["e0"]
        if not isinstance(e0, dict) or sorted(e0) != sorted(elements):
            raise ValueError(f"e0 must map each element {elements} to its energy")
        return cls(elements, form, data["parameters"], [e0[e] for e in elements],
                   data.get("metadata"))

    def describe(self):
        """What ``ace info`` prints (JSON-friendly)."""
        meta = self.metadata or {}
        return {"kind": self.kind, "form": self.form.name, "elements": self.elements,
                "cutoff": self.cutoff, "cutoff_width": self.form.cutoff_width,
                "n_parameters": self.n_parameters,
                "parameters": {e: dict(zip(self.form.parameter_names, map(float, self.parameters[e])))
                               for e in self.elements},
                "e0": dict(zip(self.elements, map(float, self.e0))),
                "provenance": {k: meta[k] for k in ("created", "ace_version") if k in meta},
                "metrics": meta.get("metrics") or {}}

    def __repr__(self):
        return (f"TraditionalPotential({self.form.name}, elements={self.elements}, "
                f"cutoff={self.cutoff})")


@dataclass
class PhysicalResults:
    """The fields of ace.evaluator.Results that ACECalculator reads."""

    energy: float
    energies: np.ndarray
    forces: np.ndarray
    strain_derivative: np.ndarray


class PhysicalEvaluator:
    """Evaluates a potential with ``parameter_rows(species)`` on its form (the interface of
    ace.evaluator.Evaluator that ACECalculator uses)."""

    def __init__(self, potential):
        self.potential = potential

    def neighbours(self, structure, num_threads=None):
        return checked_neighbour_list(structure.positions, structure.cell, structure.pbc,
                                      self.potential.cutoff, num_threads)

    def check_distances(self, nl):
        check_not_coincident(nl)

    def compute(self, structure, num_threads=None, neighbour_list=None):
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        pot = self.potential
        params = pot.parameter_rows(structure.species)
        result = per_atom(pot.form, nl, structure.species, params, num_threads)
        energies = result.energies + pot.e0[structure.species]
        if not (np.isfinite(energies).all() and np.isfinite(result.forces).all()):
            raise FloatingPointError("the physical potential produced NaN or inf")
        return PhysicalResults(float(energies.sum()), energies, result.forces, result.virial)


POTENTIAL_KINDS = {TraditionalPotential.kind: TraditionalPotential}
