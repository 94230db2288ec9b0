"""What the PACE readers and writers share: the errors, the metadata keys, PACE's default bond
and where PACE evaluates differently from our core."""
from __future__ import annotations

import numpy as np

from ace.basis.model import Bond
from ace.potential import PotentialFileError

DEFAULT_DELTA_SPLINE_BINS = 0.001
# Bond of an element pair a .yaml file does not define (no function uses it): PACE evaluates
# such neighbours with its defaults (ChebExpCos, lambda 1, rcut = dcut = 1 Å, crad = 0,
# core (0, 1), r_in = 0, delta_in = 1e-5), which contribute nothing but can select the ZBL blend.
ABSENT_BOND = dict(radbase="ChebExpCos", radparameters=[1.0], rcut=1.0, dcut=1.0, nradbase=1,
                   nradmax=0, lmax=0, r_in=0.0, delta_in=1e-5, core_repulsion=(0.0, 1.0))
PACE_METADATA_KEY = "pace"
ACE_METADATA_KEY = "ace_metadata"  # our metadata, as JSON, inside a PACE .yaml's metadata
REFERENCE_ENERGY_KEY = "reference_energy"


class PaceFormatError(PotentialFileError):
    """A PACE file is malformed, truncated, inconsistent or uses an unsupported variant."""


class PaceExportError(ValueError):
    """The potential uses something a PACE file cannot represent (or PACE evaluates differently)."""


class PaceCompatibilityWarning(UserWarning):
    """An imported PACE potential is evaluated differently by PACE and by our core somewhere."""


def pace_differences(potential) -> list:
    """Messages naming where PACE would evaluate ``potential`` differently from our core.

    PACE sets the radial basis g_k to 0 for r <= r_in - delta_in; for inner_cutoff_type 'zbl'
    it uses r_in = 1 Å there when delta_in == 0 (and no cut otherwise). Our core cuts the basis
    only through (1 - f_in) for 'distance', which vanishes there too, so the rule matters for
    'density' bonds with r_in > delta_in, and for 'zbl' bonds with delta_in == 0 and r_in < 1 Å
    (a neighbour closer than 1 Å that is not the one selecting the ZBL blend).
    """
    out = []
    el = potential.elements
    for (i, j), b in sorted(potential.bonds.items()):
        pair = f"{el[i]}-{el[j]}"
        if b.inner_cutoff_type == "density" and b.r_in - b.delta_in > 0:
            out.append(f"bond {pair}: inner_cutoff_type 'density' with r_in - delta_in = "
                       f"{b.r_in - b.delta_in:g} Å > 0 (PACE zeroes the radial basis below it, "
                       f"our core does not)")
        if b.inner_cutoff_type == "zbl" and b.delta_in == 0 and b.r_in < 1.0 and b.rcut > 1.0:
            out.append(f"bond {pair}: inner_cutoff_type 'zbl' with delta_in = 0 and r_in = "
                       f"{b.r_in:g} Å < 1 Å (PACE zeroes the radial basis below 1 Å, our core "
                       f"does not)")
    return out


def same_bond(a, b):
    return (a.radbase == b.radbase and list(a.radparameters) == list(b.radparameters)
            and a.rcut == b.rcut and a.dcut == b.dcut and a.r_in == b.r_in
            and a.delta_in == b.delta_in and a.inner_cutoff_type == b.inner_cutoff_type
            and tuple(a.core_repulsion) == tuple(b.core_repulsion)
            and a.crad.shape == b.crad.shape and np.array_equal(a.crad, b.crad))


def absent_bond(inner_cutoff_type):
    """PACE's bond of an element pair a .yaml file does not define (ABSENT_BOND)."""
    return Bond(crad=np.zeros((0, 1, 1)), inner_cutoff_type=inner_cutoff_type, **ABSENT_BOND)


def is_absent(bond):
    return same_bond(bond, absent_bond(bond.inner_cutoff_type))
