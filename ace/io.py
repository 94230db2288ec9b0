"""Potential files in every supported format: load any of them, export to PACE.

Reading recognises the format from the content, not the suffix: ace's checksummed YAML
(:meth:`ACEPotential.save`), PACE's C-tilde ``.yace`` (LAMMPS ``pair_style pace``) and
pacemaker's B-basis ``.yaml`` (the PACE readers and writers are in :mod:`ace.pace`).
:func:`export` writes the two PACE formats, and ace's own (the same as
:meth:`ACEPotential.save`) when asked for by name.
"""
from __future__ import annotations

import os
import stat

import yaml

from ace.limits import read_text_file, yaml_load_bounded
from ace.pace import (PACE_METADATA_KEY, REFERENCE_ENERGY_KEY, export_pace_yaml, export_yace,
                      load_pace)
from ace.physical.potential import POTENTIAL_KINDS, PhysicalPotential, file_kind
from ace.physically_informed import PhysicallyInformedPotential
from ace.potential import ACEPotential, PotentialFileError
from ace.uncertainty import ActiveSet
from ace.uncertainty.pace_asi import asi_path, check_asi_exportable, write_asi

EXPORT_FORMATS = ("yace", "pace-yaml", "ace")
# the suffixes that name an export format when none is given
EXPORT_SUFFIXES = {".yace": "yace", ".yaml": "pace-yaml", ".yml": "pace-yaml"}


def load_potential(source, reference_energy=False):
    """An :class:`ACEPotential` from a potential object or a file path (ace YAML, PACE .yace,
    pacemaker .yaml). ``reference_energy`` (pacemaker .yaml only): E0 from the file's metadata
    ``reference_energy``, so that energies are totals rather than reference-corrected."""
    if isinstance(source, (ACEPotential, PhysicalPotential)):
        return source
    path = os.fspath(source)
    head = read_head(path)
    if head.startswith("# ace-potential") or "format: ace-potential" in head:
        if reference_energy:
            raise ValueError(f"{path}: reference_energy applies to pacemaker .yaml files only")
        kind = file_kind(head)
        if kind is not None:
            # the physically-informed kind sits above ace.physical (it needs ace.evaluator)
            kinds = {**POTENTIAL_KINDS,
                     PhysicallyInformedPotential.kind: PhysicallyInformedPotential}
            if kind not in kinds:
                raise PotentialFileError(f"{path}: unknown potential kind {kind!r} (known: "
                                         f"{', '.join(sorted(kinds))})")
            return kinds[kind].load(path)
        return ACEPotential.load(path)
    try:
        return load_pace(path, reference_energy=reference_energy)
    except ValueError:
        kind = fit_config_kind(path)
        if kind:
            raise ValueError(f"{path}: this looks like {kind}, not a potential; fit it with "
                             f"`ace fit {path}` and give the potential file the fit writes "
                             "(its `output`)") from None
        raise


# top-level keys of a fit config that no potential file has
FIT_CONFIG_KEYS = {"ace": {"data", "output", "cutoff"}, "pacemaker": {"potential", "fit", "data"}}


def fit_config_kind(path):
    """'an ace fit config' / "pacemaker's input file" when ``path`` reads as one, else None."""
    try:  # bounded like a potential file (this runs on files no loader accepted)
        raw = yaml_load_bounded(read_text_file(path, ValueError), yaml.SafeLoader, path,
                                ValueError)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if len(FIT_CONFIG_KEYS["pacemaker"] & set(raw)) >= 2:
        return "pacemaker's fit input file"
    if len(FIT_CONFIG_KEYS["ace"] & set(raw)) >= 2:
        return "an ace fit config"
    return None


def unapplied_reference_energy(potential):
    """The metadata ``reference_energy`` of the pacemaker .yaml ``potential`` was read from when
    it was read with E0 = 0 (as pyace evaluates it), else None: such a potential predicts
    energies minus the reference energies, not total energies."""
    pace = (potential.metadata or {}).get(PACE_METADATA_KEY) or {}
    reference = (pace.get("metadata") or {}).get(REFERENCE_ENERGY_KEY)
    if pace.get("format") == "yaml" and reference is not None and not potential.e0.any():
        return reference
    return None


def read_head(path, size=4096):
    """The first bytes of a potential file as text, refusing what is not a regular file (a
    directory, /dev/zero) with a PotentialFileError naming it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise PotentialFileError(f"{path}: not a regular file (a potential file must be one)")
        with open(path, "rb") as fh:
            return fh.read(size).decode("utf-8", errors="replace")
    except OSError as exc:
        raise PotentialFileError(f"{path}: cannot read the potential file: "
                                 f"{exc.strerror or exc}") from None


def export_format(path, format=None, formats=EXPORT_FORMATS, suffixes=EXPORT_SUFFIXES):
    """``format`` if given (checked against ``formats``), else the one the suffix of ``path``
    names; ValueError if neither says."""
    if format is not None:
        if format not in formats:
            raise ValueError(f"unknown format {format!r}; expected one of {', '.join(formats)}")
        return format
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in suffixes:
        raise ValueError(f"cannot tell the format from '{path}'; give the format "
                         f"({', '.join(formats)})")
    return suffixes[suffix]


def check_exportable(potential, fmt):
    """ValueError unless ``fmt`` can hold ``potential``: PACE formats hold ACE expansions only."""
    if isinstance(potential, PhysicalPotential) and fmt != "ace":
        raise ValueError(f"a {potential.kind} potential ({potential.form.name} form) cannot be "
                         f"exported to {fmt}: no PACE format exists for it (PACE holds ACE "
                         "expansions only); use its ace YAML file directly (ace.load, "
                         "ACECalculator)")


def export(potential, path, format=None, e0_to_metadata=False, delta_spline_bins=None,
           active_set=None):
    """Write ``potential`` (an object or a file) to ``path`` in a PACE format: ``yace``
    (C-tilde, LAMMPS and python-ace) or ``pace-yaml`` (pacemaker's B-basis); by default the
    suffix decides (.yace -> yace, .yaml/.yml -> pace-yaml). ``format="ace"`` writes ace's own
    checksummed YAML (:meth:`ACEPotential.save`; the PACE options do not apply).

    A .yace carries E0; a pace-yaml file cannot, so nonzero E0 is refused unless
    ``e0_to_metadata`` (stored as pacemaker's metadata ``reference_energy``; ignored for yace).
    ``delta_spline_bins``: PACE's radial spline step in Å (default: the potential's, else
    0.001). ``active_set`` (an :class:`ace.uncertainty.ActiveSet` or its file, linear mode;
    pace-yaml only) also writes PACE's active set ``X.asi`` beside ``X.yaml``, which python-ace
    (``set_active_set``) and LAMMPS (``pair_style pace/extrapolation``) read. Returns the format
    written."""
    fmt = export_format(path, format)
    potential = load_potential(potential)
    check_exportable(potential, fmt)
    if isinstance(potential, PhysicalPotential):
        potential.save(path)
        return fmt
    if active_set is not None:
        if fmt != "pace-yaml":
            raise ValueError("an active set is exported with the pace-yaml format only (PACE "
                             "reads active sets with the B-basis .yaml)")
        if not isinstance(active_set, ActiveSet):
            active_set = ActiveSet.load(active_set)
        check_asi_exportable(active_set, potential)  # before anything is written
    if fmt == "yace":
        export_yace(potential, path, delta_spline_bins=delta_spline_bins)
    elif fmt == "pace-yaml":
        export_pace_yaml(potential, path, e0_to_metadata=e0_to_metadata,
                         delta_spline_bins=delta_spline_bins)
    else:
        potential.save(path)
    if active_set is not None:
        write_asi(active_set, potential, asi_path(path))
    return fmt
