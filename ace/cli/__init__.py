"""The ``ace`` command line: ``ace fit``, ``ace evaluate``, ``ace info``, ``ace demo``,
``ace export`` and ``ace convert`` (PACE .yace/.yaml), ``ace convert-config`` and
``ace convert-data`` (pacemaker's input.yaml and pickled datasets), ``ace init`` (a commented
config with every key), ``ace validate`` (physical properties), ``ace active-set``,
``ace select`` and ``ace learn`` (extrapolation grade and active learning).

Argument parsing only: each subcommand is a module of this package with
``add_arguments(parser)`` and ``run(args) -> exit code`` that calls the library
(:mod:`ace.api`) and prints. A new command is one module and one line of ``COMMANDS``.
Expected failures (bad config, bad data, bad potential file) print one line
``ace <command>: error: ...`` and exit with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ace import __version__

# command name -> module implementing it (imported when the parser is built)
COMMANDS = {
    "fit": "ace.cli.fit",
    "evaluate": "ace.cli.evaluate",
    "info": "ace.cli.info",
    "demo": "ace.cli.demo",
    "export": "ace.cli.export",
    "convert": "ace.cli.convert",
    "convert-config": "ace.cli.convert_config",
    "convert-data": "ace.cli.convert_data",
    "init": "ace.cli.init",
    "validate": "ace.cli.validate",
    "active-set": "ace.cli.active_set",
    "select": "ace.cli.select",
    "learn": "ace.cli.learn",
}


def summary(doc):
    """The first sentence of a module docstring (for the command list of ``ace --help``)."""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def add_command(subparsers, name, module):
    """Register ``module`` (add_arguments, run; its docstring is the help) as ``name``."""
    doc = (module.__doc__ or "").strip()
    sub = subparsers.add_parser(name, help=summary(doc) if doc else None,
                                description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(sub)
    sub.set_defaults(run=module.run)
    return sub


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ace", description="Atomic Cluster Expansion potentials: fit, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"ace {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        add_command(subparsers, name, importlib.import_module(module))
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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def fail(command, message, status=1):
    """Report an expected failure on stderr; the exit status."""
    print(f"ace {command}: error: {message}", file=sys.stderr)
    return status


def say(message):
    """Print a library message as it comes (the ``log`` the commands pass to the library)."""
    print(message, flush=True)
