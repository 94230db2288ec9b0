"""The ``ace`` command line: ``ace fit``, ``ace evaluate``, ``ace info``, ``ace demo``,
``ace export`` and ``ace convert`` (PACE .yace/.yaml).

``main()`` only parses; each subcommand lives in its own module with ``add_arguments(parser)``
and ``run(args) -> exit code``. Expected failures (bad config, bad data, bad potential file)
print one line ``ace <command>: error: ...`` and exit with status 1.
"""
from __future__ import annotations

import argparse
import sys

from ace import __version__

COMMANDS = ("fit", "evaluate", "info", "demo", "export", "convert")


def build_parser():
    from ace.cli import convert, demo, evaluate, export, fit, info

    parser = argparse.ArgumentParser(
        prog="ace", description="Atomic Cluster Expansion potentials: fit, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"ace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in zip(COMMANDS, (fit, evaluate, info, demo, export, convert)):
        doc = (module.__doc__ or "").strip()
        sub = commands.add_parser(name, help=doc.splitlines()[0] if doc else None,
                                  description=doc,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


def fail(command, message, status=1):
    """Report an expected failure on stderr; the exit status."""
    print(f"ace {command}: error: {message}", file=sys.stderr)
    return status
