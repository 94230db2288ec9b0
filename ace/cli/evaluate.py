"""Error table of a potential on data: RMSE and MAE of energies, forces and stresses.

Energies in meV/atom, forces in eV/Å, stresses in GPa; overall and per config_type.
DATA are files ASE can read (extended XYZ, ASE db, ...), glob patterns or file@slice.
`--json` prints the table as JSON instead.
"""
from __future__ import annotations


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
    from ace.calculator import load_potential
    from ace.cli import fail
    from ace.data import DataError, DataKeys, read_dataset
    from ace.fitting import progress_bar
    from ace.fitting.metrics import evaluate, format_table, to_json

    keys = {k: getattr(args, f"{k}_key") for k in ("energy", "forces", "stress", "config_type")}
    keys = DataKeys(**{k: v for k, v in keys.items() if v is not None})
    try:
        potential = load_potential(args.potential)
        data = read_dataset(args.data, keys)
        data.check_elements(potential.elements)
        table = evaluate(potential, data, args.num_threads, progress_bar(not args.json))
    except (DataError, ValueError, OSError) as exc:
        return fail("evaluate", str(exc))
    if args.json:
        print(to_json(table))
    else:
        print(format_table(table, f"{args.potential} on {len(data)} structures"))
    return 0
