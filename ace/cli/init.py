"""Write a commented fit config with every key and its default (like pacemaker -t).

Fill in the elements, cutoff, data and output here or in the file, then `ace fit FILE`.
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("config", nargs="?", default="fit.yaml",
                        help="config file to write (default: fit.yaml)")
    parser.add_argument("--elements", nargs="+", default=["Cu"], help="chemical symbols")
    parser.add_argument("--cutoff", type=float, default=5.0, help="cutoff in Å (default 5)")
    parser.add_argument("--train", default="train.xyz", help="training data file")
    parser.add_argument("--test", default="test.xyz", help="test data file")
    parser.add_argument("--output", default="potential.yaml", help="potential file the fit writes")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args):
    import os

    from ace.cli import fail
    from ace.fitting.template import config_template
    from ace.potential import write_atomic

    if os.path.exists(args.config) and not args.force:
        return fail("init", f"{args.config} exists; give --force to overwrite it")
    try:
        write_atomic(args.config, config_template(args.elements, args.cutoff, args.train,
                                                  args.test, args.output,
                                                  os.path.basename(args.config)))
    except OSError as exc:
        return fail("init", str(exc))
    print(f"wrote {args.config}: every key with its default; edit it, then ace fit "
          f"{args.config}")
    return 0
