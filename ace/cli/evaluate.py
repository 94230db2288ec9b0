"""Error table of a potential on data: RMSE and MAE of energies, forces and stresses.

Energies in meV/atom, forces in eV/Å, stresses in GPa; overall and per config_type.
DATA are files ASE can read (extended XYZ, ASE db, ...), glob patterns or file@slice.
`--json` prints the table as JSON instead. From Python: ace.evaluate(potential, data).
"""
from __future__ import annotations

KEYS = ("energy", "forces", "stress", "config_type")


def add_arguments(parser):
    parser.add_argument("potential", help="potential file (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("data", nargs="+", help="data files, glob patterns or file@slice")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--num-threads", type=int, default=None, help="OpenMP threads")
    for key in ("energy", "forces", "stress"):
        parser.add_argument(f"--{key}-key", default=None,
                            help=f"info/arrays key of the {key} (default: the stored "
                                 f"calculator result, else the info/arrays key '{key}')")
    parser.add_argument("--config-type-key", default=None,
                        help="info key grouping the structures in the table (default: "
                             "'config_type'; structures without it are 'default')")


def run(args):
    import ace
    from ace.cli import fail
    from ace.fitting.metrics import format_table, to_json

    keys = {k: getattr(args, f"{k}_key") for k in KEYS if getattr(args, f"{k}_key") is not None}
    try:
        table = ace.evaluate(args.potential, args.data, num_threads=args.num_threads, keys=keys,
                             progress=not args.json)
    except (ValueError, OSError) as exc:  # DataError, PotentialFileError, ...
        return fail("evaluate", str(exc))
    if args.json:
        print(to_json(table))
    else:
        print(format_table(table, f"{args.potential} on {table['overall']['n_structures']} "
                                  "structures"))
    return 0
