"""Convert a potential between file formats: PACE .yaml/.yace <-> ace.

The input format is recognised from the content (ace YAML, pacemaker B-basis .yaml, .yace).
The output format follows --format, or the suffix of -o (.yace -> yace; anything else -> ace,
our checksummed YAML). --format pace-yaml writes pacemaker's B-basis file.

A pacemaker .yaml is read with E0 = 0, as pyace evaluates it; --reference-energy sets E0 from
its metadata reference_energy (per-element single-atom energies minus 'shift'), so that the
converted potential predicts total instead of reference-corrected energies.
"""
from __future__ import annotations

FORMATS = ("ace", "yace", "pace-yaml")
SUFFIXES = {".yace": "yace"}


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
    doc = __doc__.strip()
    sub = subparsers.add_parser("convert", help=doc.splitlines()[0], description=doc)
    add_arguments(sub)
    sub.set_defaults(run=run)
    return sub


def run(args):
    import os

    from ace.calculator import load_potential
    from ace.cli import fail
    from ace.pace import export_pace_yaml, export_yace, load_pace

    fmt = args.format
    if fmt is None:
        fmt = SUFFIXES.get(os.path.splitext(args.output)[1].lower(), "ace")
    try:
        if args.reference_energy:
            potential = load_pace(args.input, reference_energy=True)
        else:
            potential = load_potential(args.input)
            warn_dropped_reference_energy(args.input, potential)
        if fmt == "pace-yaml":
            check_e0_exportable(potential, args.e0_to_metadata)
        if fmt == "yace":
            export_yace(potential, args.output, delta_spline_bins=args.delta_spline_bins)
        elif fmt == "pace-yaml":
            export_pace_yaml(potential, args.output, e0_to_metadata=args.e0_to_metadata,
                             delta_spline_bins=args.delta_spline_bins)
        else:
            potential.save(args.output)
    except (ValueError, OSError) as exc:
        return fail("convert", str(exc))
    print(f"wrote {args.output} ({fmt}: {potential.n_functions} B-functions, elements "
          f"{' '.join(potential.elements)})")
    return 0


def warn_dropped_reference_energy(path, potential):
    """Warn when a pacemaker .yaml with metadata reference_energy is read with E0 = 0: the
    converted potential then predicts reference-corrected, not total, energies."""
    import sys

    from ace.pace import PACE_METADATA_KEY, REFERENCE_ENERGY_KEY

    pace = (potential.metadata or {}).get(PACE_METADATA_KEY) or {}
    reference = (pace.get("metadata") or {}).get(REFERENCE_ENERGY_KEY)
    if pace.get("format") == "yaml" and reference is not None and not potential.e0.any():
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
