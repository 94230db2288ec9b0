"""Translate pacemaker's input.yaml into an ace fit config (ace fit reads either).

Every pacemaker key with an ace equivalent is mapped (the table is in
ace/fitting/pacemaker.py); each key left out is listed with the reason, on stderr and as a
comment at the top of the written config. Relative data paths are rewritten for the directory
of the output file. From Python: ace.fitting.template.convert_config(input, output).
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("input", help="pacemaker input file (input.yaml)")
    parser.add_argument("-o", "--output", required=True, help="ace config to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def run(args):
    import sys

    from ace.cli import fail
    from ace.fitting.template import convert_config

    try:
        notes = convert_config(args.input, args.output, force=args.force)
    except (ValueError, OSError) as exc:  # ConfigError, ...
        return fail("convert-config", str(exc))
    for key, why in notes:
        print(f"ignored {key}: {why}", file=sys.stderr)
    print(f"wrote {args.output} ({len(notes)} pacemaker key(s) left out, listed at its top)")
    return 0
