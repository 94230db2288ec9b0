"""Export a potential to PACE: .yace (LAMMPS `pair_style pace`) or pacemaker's B-basis .yaml.

The format follows --format, or the suffix of -o (.yace -> yace, .yaml/.yml -> pace-yaml).
A .yace carries the per-element E0; a PACE .yaml cannot add E0 to the energy, so a potential
with nonzero E0 is refused unless --e0-to-metadata (pacemaker's metadata reference_energy; pyace
then predicts E - sum E0). Anything PACE cannot represent fails with a message naming it.

LAMMPS:  pair_style pace
         pair_coeff * * out.yace Al Ni
"""
from __future__ import annotations

import os

FORMATS = ("yace", "pace-yaml")
SUFFIXES = {".yace": "yace", ".yaml": "pace-yaml", ".yml": "pace-yaml"}


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
    doc = __doc__.strip()
    sub = subparsers.add_parser("export", help=doc.splitlines()[0], description=doc)
    add_arguments(sub)
    sub.set_defaults(run=run)
    return sub


def output_format(path, explicit, formats=FORMATS, suffixes=SUFFIXES):
    """The format named by ``explicit`` or by the suffix of ``path``; ValueError if neither."""
    if explicit is not None:
        return explicit
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in suffixes:
        raise ValueError(f"cannot tell the format from '{path}'; give --format "
                         f"({', '.join(formats)})")
    return suffixes[suffix]


def export_asi(potential, active_set_path, output, fmt):
    """Write PACE's X.asi beside the exported X.yaml; its path."""
    from ace.uncertainty import ActiveSet
    from ace.uncertainty.pace_asi import asi_path, write_asi

    if fmt != "pace-yaml":
        raise ValueError("--active-set needs --format pace-yaml (PACE reads active sets "
                         "with the B-basis .yaml only)")
    path = asi_path(output)
    write_asi(ActiveSet.load(active_set_path), potential, path)
    return path


def run(args):
    from ace.calculator import load_potential
    from ace.cli import fail
    from ace.pace import export_pace_yaml, export_yace

    try:
        fmt = output_format(args.output, args.format)
        potential = load_potential(args.potential)
        if fmt == "yace":
            export_yace(potential, args.output, delta_spline_bins=args.delta_spline_bins)
        else:
            export_pace_yaml(potential, args.output, e0_to_metadata=args.e0_to_metadata,
                             delta_spline_bins=args.delta_spline_bins)
        if args.active_set is not None:
            asi = export_asi(potential, args.active_set, args.output, fmt)
    except (ValueError, OSError) as exc:
        return fail("export", str(exc))
    print(f"wrote {args.output} ({fmt}: {potential.n_functions} B-functions, elements "
          f"{' '.join(potential.elements)})")
    if args.active_set is not None:
        print(f"wrote {asi} (PACE active set: pyace set_active_set, LAMMPS "
              "pair_style pace/extrapolation)")
    if fmt == "yace":
        print(f"LAMMPS: pair_style pace\n        pair_coeff * * {args.output} "
              f"{' '.join(potential.elements)}")
    return 0
