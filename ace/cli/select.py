"""Pick the candidate structures that add most to a potential's active set (D-optimality).

Greedy MaxVol: the candidate with the largest max gamma is taken, its atoms join the active
rows, the rest are graded again; candidates that the taken ones already cover (gamma <=
--min-gamma, e.g. near-duplicates) are skipped. Writes the picked structures (extended XYZ, in
the order picked, with info "max_gamma") for labelling. CANDIDATES are files ASE can read, glob
patterns or file@slice; no labels are needed.
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("candidates", nargs="+", help="candidate structures (files, globs, "
                                                      "file@slice)")
    parser.add_argument("--potential", required=True, help="potential file")
    parser.add_argument("--active-set", required=True, help="its active set (ace active-set)")
    parser.add_argument("-n", type=int, required=True, help="number of structures to pick")
    parser.add_argument("-o", "--output", required=True, help="output file (e.g. picked.xyz)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="gamma above which an atom extends the set (default: the active "
                             "set's MaxVol tolerance)")
    parser.add_argument("--min-gamma", type=float, default=1.1,
                        help="candidates whose max gamma is at most this are covered by the "
                             "set and skipped (default %(default)s)")
    parser.add_argument("--num-threads", type=int, default=None, help="OpenMP threads")


def run(args):
    import ase.io

    from ace.calculator import load_potential
    from ace.cli import fail
    from ace.cli.active_set import read_structures
    from ace.data import DataError
    from ace.uncertainty import ActiveSet
    from ace.uncertainty.selection import select_structures

    try:
        potential = load_potential(args.potential)
        active_set = ActiveSet.load(args.active_set)
        active_set.check(potential)
        candidates = read_structures(args.candidates)
        picked = select_structures(potential, active_set, candidates, args.n, args.tolerance,
                                   args.min_gamma, args.num_threads)
        images = []
        for index, gamma in picked:
            atoms = candidates[index].copy()
            atoms.info["max_gamma"] = gamma
            atoms.info["candidate_index"] = index
            images.append(atoms)
        ase.io.write(args.output, images, format="extxyz")
    except (DataError, ValueError, OSError) as exc:
        return fail("select", str(exc))
    print(f"picked {len(picked)} of {len(candidates)} candidates into {args.output}"
          + (" (the others are within the active set's span)" if len(picked) < args.n else ""))
    return 0
