"""The extrapolation grade during a simulation: projections from the calculator's energy pass
(or on its neighbour list), gamma by one matrix product per element, and the warning / stop
thresholds."""
from __future__ import annotations

import os
import warnings

from ace.evaluator import Evaluator
from ace.uncertainty.active_set import ActiveSet
from ace.uncertainty.projections import finish_projections, kernel_mode, structure_projections

DEFAULT_GAMMA_WARNING = 5.0  # pacemaker's upper bound for "extrapolating, worth labelling"
MD_GAMMA_STOP = 25.0  # pacemaker's LAMMPS example halts the run above this


class ExtrapolationError(RuntimeError):
    """The extrapolation grade of a structure exceeded the stop threshold."""


class ExtrapolationWarning(UserWarning):
    """The extrapolation grade of a structure exceeded the warning threshold."""


class Grader:
    """Gamma of the structures a calculator sees, with an active set checked against the
    potential once."""

    def __init__(self, potential, active_set, evaluator=None):
        if not isinstance(active_set, ActiveSet):
            active_set = ActiveSet.load(os.fspath(active_set))
        active_set.check(potential)
        self.potential = potential
        self.active_set = active_set
        self.evaluator = evaluator or Evaluator(potential)
        self._warned = False

    @property
    def mode(self):
        """The projection mode of the active set ("normalised", "linear" or "full")."""
        return self.active_set.mode

    @property
    def kernel_mode(self):
        """The projections the energy pass must return for this grade ("linear" or "full")."""
        return kernel_mode(self.active_set.mode)

    def gamma(self, structure, neighbour_list, num_threads=None, projections=None):
        """Per-atom gamma; ``projections`` from the energy pass (Evaluator.compute with
        projections=self.kernel_mode; normalised here in place when the mode asks), else
        computed here by the projection kernel."""
        if projections is None:
            projections = structure_projections(self.evaluator, structure, self.active_set.mode,
                                                neighbour_list, num_threads)
        else:
            projections = finish_projections(projections, self.active_set.mode)
        return self.active_set.gamma(projections, structure.species, num_threads)

    def check(self, max_gamma, warning, stop):
        """Warn when max gamma rises above ``warning`` (once until it falls back below);
        raise ExtrapolationError above ``stop``."""
        if stop is not None and max_gamma > stop:
            raise ExtrapolationError(f"max extrapolation grade {max_gamma:.3g} exceeds the stop "
                                     f"threshold {stop:g}: the potential is far outside its "
                                     "training data")
        above = warning is not None and max_gamma > warning
        if above and not self._warned:
            warnings.warn(f"max extrapolation grade {max_gamma:.3g} exceeds {warning:g}: the "
                          "potential extrapolates", ExtrapolationWarning, stacklevel=3)
        self._warned = above
