"""Convert pacemaker's pickled DataFrames (*.pckl.gzip) to extended XYZ, once.

A pickle can run any code it holds when loaded, so the input is read only with --trust-pickle:
give it for files you made or got from a source you trust. The XYZ keeps the energy (the total
energy, or energy_corrected when the frame has no total energies), the forces, and as info keys
energy_corrected, name, config_type, stress/virial and the other scalar columns. Needs pandas
(pip install 'ace[pacemaker]'). From Python: ace.pacemaker_data.convert_to_xyz(input, output,
trust_pickle=True).
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("input", help="pacemaker dataset (pandas DataFrame pickle)")
    parser.add_argument("-o", "--output", required=True, help="extended XYZ file to write")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read the pickle (it can run code when loaded: only for files "
                             "you trust)")


def run(args):
    from ace.cli import fail
    from ace.pacemaker_data import convert_to_xyz

    try:
        images = convert_to_xyz(args.input, args.output, trust_pickle=args.trust_pickle)
    except (ValueError, OSError) as exc:
        return fail("convert-data", str(exc))
    print(f"wrote {args.output} ({len(images)} structures, "
          f"{sum(len(a) for a in images)} atoms)")
    return 0
