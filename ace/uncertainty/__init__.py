"""Where a potential can be trusted: the extrapolation grade gamma (active sets, D-optimality)
and committee uncertainty.

Layer 6: imports ace._core, ace.basis, ace.potential, ace.evaluator and ace.pace only.
"""
from ace.uncertainty.active_set import (ActiveSet, ActiveSetError, build_active_set,
                                        potential_fingerprint, structure_gamma)
from ace.uncertainty.grading import (DEFAULT_GAMMA_WARNING, MD_GAMMA_STOP, ExtrapolationError,
                                     ExtrapolationWarning, Grader)
from ace.uncertainty.maxvol import maxvol
from ace.uncertainty.projections import MODES
from ace.uncertainty.selection import select_structures

__all__ = ["ActiveSet", "ActiveSetError", "build_active_set", "potential_fingerprint",
           "structure_gamma", "DEFAULT_GAMMA_WARNING", "MD_GAMMA_STOP", "ExtrapolationError",
           "ExtrapolationWarning", "Grader", "maxvol", "MODES", "select_structures"]
