"""Loading a PACE .yaml (B-basis) or .yace (C-tilde) file as an :class:`ACEPotential`."""
from __future__ import annotations

import os

from ace.pace.bbasis_import import potential_from_bbasis
from ace.pace.common import PaceFormatError
from ace.pace.ctilde_import import potential_from_yace
from ace.pace.reader import sniff


def load_pace(path, reference_energy=False):
    """Load a PACE .yaml (B-basis) or .yace (C-tilde) file as an :class:`ACEPotential`.

    The format is recognised from the content. ``reference_energy`` (for .yaml only) sets E0
    from pacemaker's metadata reference energies; by default E0 = 0, as pyace evaluates .yaml.
    """
    path = os.fspath(path)
    kind, data = sniff(path)
    if kind == "yaml":
        return potential_from_bbasis(data, path, reference_energy)
    if reference_energy:
        raise PaceFormatError(f"{path}: reference_energy applies to a pacemaker .yaml; a .yace "
                              f"carries its E0 itself")
    return potential_from_yace(data, path)


def load_pace_yaml(path, reference_energy=False):
    """Load a pacemaker B-basis .yaml (see :func:`load_pace`)."""
    path = os.fspath(path)
    kind, data = sniff(path)
    if kind != "yaml":
        raise PaceFormatError(f"{path}: not a PACE B-basis .yaml (no 'species' section)")
    return potential_from_bbasis(data, path, reference_energy)


def load_yace(path):
    """Load a PACE C-tilde .yace (see :func:`load_pace`)."""
    path = os.fspath(path)
    kind, data = sniff(path)
    if kind != "yace":
        raise PaceFormatError(f"{path}: not a PACE .yace (C-tilde) file")
    return potential_from_yace(data, path)
