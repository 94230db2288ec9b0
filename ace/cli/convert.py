"""Convert a potential between file formats: PACE .yaml/.yace <-> ace.

The input format is recognised from the content (ace YAML, pacemaker B-basis .yaml, .yace).
The output format follows --format, or the suffix of -o (.yace -> yace; anything else -> ace,
our checksummed YAML). --format pace-yaml writes pacemaker's B-basis file.

A pacemaker .yaml is read with E0 = 0, as pyace evaluates it; --reference-energy sets E0 from
its metadata reference_energy (per-element single-atom energies minus 'shift'), so that the
converted potential predicts total instead of reference-corrected energies.
From Python: ace.export(ace.load(input, reference_energy=...), output, format).
"""
from __future__ import annotations

import os
import sys

FORMATS = ("ace", "yace", "pace-yaml")


def add_arguments(parser):
    parser.add_argument("input", help="potential file (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("-o", "--output", required=True, help="output file")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: yace for *.yace, else ace)")
    parser.add_argument("--reference-energy", action="store_true",
                        help="PACE .yaml input: take E0 from metadata reference_energy")
    parser.add_argument("--e0-to-metadata", action="store_true",
                        help="pace-yaml output: store nonzero E0 as metadata reference_energy")
    parser.add_argument("--delta-spline-bins", type=float, default=None,
                        help="PACE outputs: spline step in Å (default: the potential's, "
                             "else 0.001)")


def add_parser(subparsers):
    from ace.cli import add_command
    return add_command(subparsers, "convert", sys.modules[__name__])


def output_format(path, explicit):
    """``explicit``, else yace for a .yace file and ace for anything else."""
    if explicit is not None:
        return explicit
    return "yace" if os.path.splitext(path)[1].lower() == ".yace" else "ace"


def run(args):
    import ace
    from ace.cli import fail

    fmt = output_format(args.output, args.format)
    try:
        potential = ace.load(args.input, reference_energy=args.reference_energy)
        warn_unapplied_reference_energy(args.input, potential)
        if fmt == "pace-yaml":
            check_e0_exportable(potential, args.e0_to_metadata)
        ace.export(potential, args.output, fmt, e0_to_metadata=args.e0_to_metadata,
                   delta_spline_bins=args.delta_spline_bins)
    except (ValueError, OSError) as exc:
        return fail("convert", str(exc))
    print(f"wrote {args.output} ({fmt}: {potential.n_functions} B-functions, elements "
          f"{' '.join(potential.elements)})")
    return 0


def warn_unapplied_reference_energy(path, potential):
    """Warn when a pacemaker .yaml with metadata reference_energy is read with E0 = 0: the
    converted potential then predicts reference-corrected, not total, energies."""
    from ace.io import unapplied_reference_energy

    reference = unapplied_reference_energy(potential)
    if reference is not None:
        print(f"ace convert: warning: {path} has metadata reference_energy {reference} but is "
              "read with E0 = 0 (as pyace evaluates it): the result predicts energies minus the "
              "reference energies; add --reference-energy to predict total energies",
              file=sys.stderr)


def check_e0_exportable(potential, e0_to_metadata):
    """ValueError naming the command-line flag (not the library's keyword) when a potential
    with nonzero E0 is written as a PACE .yaml without --e0-to-metadata."""
    if potential.e0.any() and not e0_to_metadata:
        e0 = ", ".join(f"{el} {float(v):.6g} eV" for el, v in zip(potential.elements,
                                                                  potential.e0))
        raise ValueError(f"nonzero E0 ({e0}): a PACE .yaml cannot add it to the energy (pyace "
                         "ignores metadata); export .yace, or give --e0-to-metadata to store "
                         "it as pacemaker's metadata reference_energy")
