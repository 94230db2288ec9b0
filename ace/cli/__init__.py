"""The ``ace`` command line: ``ace fit``, ``ace evaluate``, ``ace info``, ``ace demo``,
``ace export`` and ``ace convert`` (PACE .yace/.yaml), ``ace convert-config`` and
``ace convert-data`` (pacemaker's input.yaml and pickled datasets), ``ace init`` (a commented
config with every key).

``main()`` only parses; each subcommand lives in its own module with ``add_arguments(parser)``
and ``run(args) -> exit code``. Expected failures (bad config, bad data, bad potential file)
print one line ``ace <command>: error: ...`` and exit with status 1.
"""
from __future__ import annotations

import argparse
import sys

from ace import __version__

COMMANDS = ("fit", "evaluate", "info", "demo", "export", "convert", "convert-config",
            "convert-data", "init")


def summary(doc):
    """The first sentence of a module docstring (for the command list of ``ace --help``)."""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def build_parser():
    from ace.cli import convert, convert_config, convert_data, demo, evaluate, export, fit, info
    from ace.cli import init

    parser = argparse.ArgumentParser(
        prog="ace", description="Atomic Cluster Expansion potentials: fit, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"ace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in zip(COMMANDS, (fit, evaluate, info, demo, export, convert,
                                       convert_config, convert_data, init)):
        doc = (module.__doc__ or "").strip()
        sub = commands.add_parser(name, help=summary(doc) if doc else None,
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
    try:
        status = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except BrokenPipeError:
        # the reader went away (`ace info x | head`): not an error of ours; stdout is pointed
        # at devnull so that the interpreter's final flush does not raise again
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def fail(command, message):
    """Report an expected failure on stderr; the exit status."""
    print(f"ace {command}: error: {message}", file=sys.stderr)
    return 1
