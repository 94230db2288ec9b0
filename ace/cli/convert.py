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
