"""Active learning: MD with the extrapolation grade, label what extrapolates, refit, repeat.

CONFIG is a YAML file (keys in ace/learn.py's documentation: potential, reference
``module:attribute`` of any ASE calculator, seeds, test, output, iterations, select,
gamma_threshold, gamma_stop, md, loss, seed). Every iteration is saved in the output directory
and the loop resumes there after an interruption. Prints per iteration the labelled structures,
the max gamma seen and the test errors.
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("config", help="active-learning configuration (YAML)")


def run(args):
    from ace.cli import fail
    from ace.data import DataError
    from ace.learn import learn, load_config

    try:
        learn(load_config(args.config))
    except KeyboardInterrupt:
        return fail("learn", "interrupted; run the same command again to resume")
    except (DataError, ValueError, OSError) as exc:
        return fail("learn", str(exc))
    return 0
