"""Export a potential to PACE: .yace (LAMMPS `pair_style pace`) or pacemaker's B-basis .yaml.

The format follows --format, or the suffix of -o (.yace -> yace, .yaml/.yml -> pace-yaml).
A .yace carries the per-element E0; a PACE .yaml cannot add E0 to the energy, so a potential
with nonzero E0 is refused unless --e0-to-metadata (pacemaker's metadata reference_energy; pyace
then predicts E - sum E0). Anything PACE cannot represent fails with a message naming it.
From Python: ace.export(potential, path).

LAMMPS:  pair_style pace
         pair_coeff * * out.yace Al Ni
"""
from __future__ import annotations

import sys

FORMATS = ("yace", "pace-yaml")


def add_arguments(parser):
    parser.add_argument("potential", help="potential file (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("-o", "--output", required=True, help="output file")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="yace (C-tilde, LAMMPS) or pace-yaml (B-basis, pacemaker/pyace); "
                             "default: from the output suffix")
    parser.add_argument("--e0-to-metadata", action="store_true",
                        help="pace-yaml: store nonzero E0 as metadata reference_energy (not "
                             "added to energies by PACE) instead of refusing")
    parser.add_argument("--delta-spline-bins", type=float, default=None,
                        help="PACE spline step in Å (default: the potential's, else 0.001)")
    parser.add_argument("--active-set", default=None,
                        help="pace-yaml: also write PACE's active set X.asi beside X.yaml from "
                             "this (linear-mode) active-set file of `ace active-set`")


def add_parser(subparsers):
    from ace.cli import add_command
    return add_command(subparsers, "export", sys.modules[__name__])


def run(args):
    import ace
    from ace.cli import fail
    from ace.cli.convert import check_e0_exportable
    from ace.io import check_exportable, export_format
    from ace.uncertainty.pace_asi import asi_path

    try:
        potential = ace.load(args.potential)
        fmt = export_format(args.output, args.format, formats=FORMATS)
        check_exportable(potential, fmt)
        if fmt == "pace-yaml":
            check_e0_exportable(potential, args.e0_to_metadata)
        ace.export(potential, args.output, fmt, e0_to_metadata=args.e0_to_metadata,
                   delta_spline_bins=args.delta_spline_bins, active_set=args.active_set)
    except (ValueError, OSError) as exc:
        return fail("export", str(exc))
    print(f"wrote {args.output} ({fmt}: {potential.n_functions} B-functions, elements "
          f"{' '.join(potential.elements)})")
    if args.active_set is not None:
        print(f"wrote {asi_path(args.output)} (PACE active set: pyace set_active_set, LAMMPS "
              "pair_style pace/extrapolation)")
    if fmt == "yace":
        print(f"LAMMPS: pair_style pace\n        pair_coeff * * {args.output} "
              f"{' '.join(potential.elements)}")
    return 0
