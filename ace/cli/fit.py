"""Fit an ACE potential (linear, or nonlinear with fit.method: nonlinear) from a YAML config.

The config needs only `elements`, `cutoff`, `data: {train, test}` and `output`; every other
key is documented in ace/fitting/config.py (`ace init` writes them all with their defaults).
pacemaker's input.yaml is read too, each key it has and ace ignores named with the reason.
Prints the basis, the chosen weights and regularisation, the error tables for train and test,
and writes the potential (with the fit settings and metrics in its metadata) and a metrics JSON
beside it (<output>.metrics.json). `--dry-run` stops after reading the data and building the
basis and prints the basis size, the memory the fit will need and, for a nonlinear fit, an
estimate of its time. `--scheduler tcp://host:port` fits on that Dask scheduler's workers
(fit.engine: dask, the data streamed in chunks; see docs/distributed.md). The same from
Python: ace.fit(config), ace.estimate_fit(config).
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("config", help="fit configuration (YAML)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the basis size and the memory the fit needs, then stop")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="OpenMP threads (default: fit.num_threads, else OMP_NUM_THREADS)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (bars or periodic lines on stderr)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read pacemaker's pickled datasets (*.pckl.gzip; a pickle can "
                             "run code when loaded: only for files you trust)")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip the quick validation after the fit (figures of the errors, "
                             "equation of state, elastic constants in <output>.validation/)")
    parser.add_argument("--resume", action="store_true",
                        help="nonlinear fit: continue from <output>.checkpoint.json (the "
                             "config unchanged, or with a larger max_iterations or patience "
                             "to continue a finished fit)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="fit on the Dask scheduler at ADDRESS (tcp://host:port): the "
                             "design rows and error tables on its workers, the data streamed "
                             "(needs ace[dask]; sets fit.engine: dask, fit.scheduler)")
    parser.add_argument("--strict", action="store_true",
                        help="flagged training data (energy outliers, conflicting duplicates, "
                             "implausible distances) stop the fit; an absurd training error "
                             "gives exit status 3 (see ace/fitting/sanity.py)")


STRICT_EXIT_STATUS = 3  # --strict: the potential was written, but its fit was flagged


def run(args):
    import ace
    from ace.cli import fail, say
    from ace.fitting.config import FitConfig

    config = None
    try:
        config = FitConfig.load(args.config, trust_pickle=args.trust_pickle)
        if args.scheduler is not None:
            config = config.with_scheduler(args.scheduler)
        if args.dry_run:
            print_estimate(ace.estimate_fit(config, num_threads=args.num_threads, log=say),
                           config)
            return 0
        result = ace.fit(config, resume=args.resume, num_threads=args.num_threads,
                         progress=False if args.no_progress else None, log=say,
                         validate=not args.no_validate, strict=args.strict)
    except KeyboardInterrupt:
        return fail("fit", "interrupted" + (
            f"; the best potential so far is in {config.output}; continue with --resume"
            if config is not None and config.nonlinear is not None else ""))
    except (ValueError, OSError, ImportError) as exc:  # ConfigError, DataError, no dask, ...
        return fail("fit", str(exc))
    print_tables(result.tables)
    print(f"wrote {result.output} and {result.metrics_path}"
          + (f"; quick validation in {result.validation}/" if result.validation else ""))
    if args.strict and result.flagged:
        return fail("fit", f"--strict: the fit was flagged ({len(result.flagged)} warning(s) "
                    "above)", status=STRICT_EXIT_STATUS)
    return 0


def print_tables(tables):
    """The error tables of a fit, by split."""
    from ace.fitting.metrics import format_table

    for name, table in tables.items():
        print()
        print(format_table(table, f"{name} errors"))
    print()


def print_estimate(estimate, config):
    print(f"basis size: {estimate.n_functions} functions")
    for element, counts in estimate.counts.items():
        print(f"  {element}: " + ", ".join(f"order {k}: {n}" for k, n in counts.items()))
    print("memory needed by the fit (approximate):")
    for key, value in estimate.memory.items():
        print(f"  {key:<17} {value / 2**20:10.1f} MiB")
    if estimate.nonlinear_seconds is not None:
        s = config.nonlinear
        total = estimate.nonlinear_seconds
        print(f"nonlinear stage: {estimate.nonlinear_seconds_per_evaluation:.3g} s per loss and "
              f"gradient evaluation on the {estimate.n_train} training structures; "
              f"{s.max_iterations} iterations x {s.restarts} restart(s) take at most about "
              f"{total:.0f} s ({total / 60:.1f} min; less if it converges or stops early)")
