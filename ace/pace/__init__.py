"""PACE potential files (python-ace / pacemaker / LAMMPS ``pair_style pace``): export and import.

Two formats (docs/file-formats.md, PACE .yace and .yaml):

* ``.yaml`` -- pacemaker's B-basis file: species blocks with embeddings, bonds and the coupled
  B-functions with their coefficients. It maps one-to-one onto :class:`ACEPotential`.
* ``.yace`` -- the C-tilde file LAMMPS reads: bonds of every ordered pair, per-element E0 and
  products of A's with folded coefficients in PACE's half m-space. Export folds our B-functions
  with :func:`ace.basis.to_ctilde`; import recovers B-coefficients per (mu0; mus, ns, ls) tuple
  by least squares over our independent couplings and checks that the residual is round-off.

Energy constants. pyace and LAMMPS add a .yace file's ``E0`` list to every atomic energy, but
nothing of a .yaml file: pacemaker's metadata ``reference_energy`` (the per-element single-atom
energies the model was trained relative to, and a per-atom ``shift``) is *not* part of the
predicted energy. Hence:

* ``load_pace("x.yaml")`` gives E0 = 0 (energies identical to pyace's) and keeps the metadata;
  ``reference_energy=True`` instead sets E0 = reference_energy[element] - shift (total energies).
* ``export_pace_yaml`` refuses a potential with nonzero E0 unless ``e0_to_metadata=True``, which
  stores E0 as pacemaker's ``reference_energy``; pyace then predicts E - sum E0 (and
  ``load_pace(..., reference_energy=True)`` gives the E0 back). ``export_yace`` writes E0.

Where PACE evaluates differently from our core, export fails naming the feature and import
warns with :class:`PaceCompatibilityWarning` (see :func:`pace_differences`). Files are read with
YAML safe loaders only and written atomically.

The modules: ``yace_writer`` and ``yaml_writer`` (with ``export``, what both writers share),
``reader`` (the safe YAML reader and typed field access), ``bbasis_import`` (.yaml),
``ctilde_import`` (.yace) with ``ctilde_inversion`` (its least-squares inversion), ``load``
(the format recognised from the content), ``common`` (errors, metadata keys, PACE's default
bond, :func:`pace_differences`).
"""
from ace.pace.common import (ABSENT_BOND, ACE_METADATA_KEY, DEFAULT_DELTA_SPLINE_BINS,
                             PACE_METADATA_KEY, REFERENCE_ENERGY_KEY, PaceCompatibilityWarning,
                             PaceExportError, PaceFormatError, pace_differences)
from ace.pace.ctilde_inversion import CTILDE_RESIDUAL_TOLERANCE
from ace.pace.export import PACE_MAX_ATOMIC_NUMBER
from ace.pace.load import load_pace, load_pace_yaml, load_yace
from ace.pace.reader import RADIAL_NAMES
from ace.pace.yace_writer import PACE_MAX_MS_COMBS, export_yace, yace_text
from ace.pace.yaml_writer import export_pace_yaml, pace_yaml_text

__all__ = ["PaceFormatError", "PaceExportError", "PaceCompatibilityWarning", "export_pace_yaml",
           "export_yace", "load_pace", "load_pace_yaml", "load_yace", "pace_differences",
           "pace_yaml_text", "yace_text"]
