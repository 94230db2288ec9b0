"""Write a commented fit config with every key and its default (like pacemaker -t).

Fill in the elements, cutoff, data and output here or in the file, then `ace fit FILE`.
From Python: ace.fitting.template.write_template(path, elements, cutoff, ...).
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
    from ace.cli import fail
    from ace.fitting.template import write_template

    try:
        write_template(args.config, args.elements, args.cutoff, args.train, args.test,
                       args.output, force=args.force)
    except (ValueError, OSError) as exc:  # ConfigError, ...
        return fail("init", str(exc))
    print(f"wrote {args.config}: every key with its default; edit it, then ace fit "
          f"{args.config}")
    return 0
