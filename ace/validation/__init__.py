"""``ace validate``: physical properties and figures that decide whether a potential is usable.

``validate(potentials, data=None, reference=None, structure=None, output_dir=..., quick=False)``
relaxes the crystal and computes lattice constant, equation of state, elastic constants,
vacancy and surface energies, phonons, the dimer curve and MD stability for one or several
potentials side by side, compares them with reference values (a YAML file, or the training
data's own strained crystals) and writes ``report.md``, PNG figures and ``report.json``.
``quick_validate`` is the short version ``ace fit`` runs after a fit.
"""
from __future__ import annotations

__all__ = ["validate", "quick_validate", "load_reference", "SCHEMA_VERSION"]


def __getattr__(name):
    # lazy: importing ace.validation pulls in neither ASE's optimisers nor matplotlib
    if name in ("validate", "quick_validate", "SCHEMA_VERSION"):
        from ace.validation import report
        return getattr(report, name)
    if name == "load_reference":
        from ace.validation.references import load_reference
        return load_reference
    raise AttributeError(f"module 'ace.validation' has no attribute {name!r}")
