"""Build the active set of a potential: the extrapolation grade's reference atoms.

MaxVol chooses, per element, as many training atoms as the element has projections (B-function
values in --mode linear, dE_i/dc in --mode full) spanning the largest volume; gamma <= 1 on
the data, gamma > 1 where the potential extrapolates. The output (default
POTENTIAL.active.yaml) is checksummed and tied to the potential; use it with
``ACECalculator(potential, active_set=...)`` (results "gamma", "max_gamma").
DATA are files ASE can read (extended XYZ, ASE db, ...), glob patterns or file@slice; no labels
are needed.
"""
from __future__ import annotations

import os


def add_arguments(parser):
    from ace.uncertainty import MODES
    from ace.uncertainty.projections import DEFAULT_MODE
    from ace.uncertainty.active_set import DEFAULT_BATCH_SIZE
    from ace.uncertainty.maxvol import DEFAULT_TOLERANCE

    parser.add_argument("potential", help="potential file (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("data", nargs="+", help="data files, glob patterns or file@slice")
    parser.add_argument("-o", "--output", default=None,
                        help="active-set file (default: POTENTIAL without suffix + .active.yaml)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help="projections: normalised (B-functions scaled to unit length; the "
                             "default, the best detector), linear (B-functions, needed for PACE "
                             ".asi) or full (dE_i/dc for every coefficient)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="MaxVol swap tolerance (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="structures whose projections are held in memory at once")
    parser.add_argument("--num-threads", type=int, default=None, help="OpenMP threads")


def default_output(potential_path):
    return os.path.splitext(os.fspath(potential_path))[0] + ".active.yaml"


def read_structures(sources):
    """ASE Atoms of every source (file, glob or file@slice), without requiring labels."""
    import ase.io

    from ace.data import DataError, expand_sources

    images = []
    for path in expand_sources(sources):
        base, _, index = path.partition("@")
        try:
            images += ase.io.read(base, index=index or ":")
        except Exception as exc:  # ASE raises many kinds; name the file
            raise DataError(f"{base}: cannot read: {type(exc).__name__}: {exc}") from exc
    return images


def run(args):
    from ace.calculator import load_potential
    from ace.cli import fail
    from ace.data import DataError
    from ace.uncertainty import build_active_set

    output = args.output or default_output(args.potential)
    try:
        if args.tolerance < 1:
            raise ValueError(f"--tolerance must be >= 1, got {args.tolerance}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        potential = load_potential(args.potential)
        structures = read_structures(args.data)
        active_set = build_active_set(potential, structures, mode=args.mode,
                                      tolerance=args.tolerance, batch_size=args.batch_size,
                                      num_threads=args.num_threads, progress=print)
        active_set.save(output)
    except (DataError, ValueError, OSError) as exc:
        return fail("active-set", str(exc))
    sizes = ", ".join(f"{e}: {len(active_set.matrices[e])}" for e in active_set.elements)
    print(f"wrote {output} ({args.mode} mode, {len(structures)} structures; active atoms "
          f"per element {sizes})")
    return 0
