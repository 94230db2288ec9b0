"""Fitting ACE potentials: the loss and linear solver, error tables, the fit configuration."""
from __future__ import annotations

import sys
import time

__all__ = ["fit_linear", "LossSettings", "LinearFit", "error_table", "evaluate", "format_table",
           "progress_bar"]


def progress_bar(enabled=True, stream=None, interval=10.0, use_tqdm=True):
    """A ``progress(iterable, description)`` wrapper, or None when not ``enabled``.

    With tqdm installed (an optional dependency: ``pip install ace[progress]``) it draws a
    tqdm bar; otherwise it prints a plain line to ``stream`` (stderr) at most every ``interval``
    seconds and one when the loop ends, so long fits show signs of life in logs too.
    """
    if not enabled:
        return None
    if use_tqdm:
        try:  # an optional dependency, so imported where it is asked for
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            def progress(iterable, description):
                return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)

            return progress

    def progress(iterable, description):
        return _plain_progress(iterable, description, stream, interval)

    return progress


def _plain_progress(iterable, description, stream, interval):
    stream = sys.stderr if stream is None else stream
    try:
        total = len(iterable)
    except TypeError:
        total = None
    start = last = time.perf_counter()
    done = shown = 0
    for item in iterable:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= interval or done == total:
            last, shown = now, done
            print(_progress_line(description, done, total, now - start), file=stream,
                  flush=True)
    if shown != done:  # unknown length: say where it ended
        print(_progress_line(description, done, total, time.perf_counter() - start),
              file=stream, flush=True)


def _progress_line(description, done, total, elapsed):
    if not total:
        return f"{description}: {done}, {elapsed:.0f} s"
    left = elapsed / max(done, 1) * (total - done)
    return (f"{description}: {done}/{total} ({100 * done / total:.0f}%), {elapsed:.0f} s"
            + (f", about {left:.0f} s left" if done < total else ""))


def __getattr__(name):
    # lazy: `import ace.fitting` stays cheap and free of compiled-module imports
    if name in ("fit_linear", "LossSettings", "LinearFit"):
        from ace.fitting import linear
        return getattr(linear, name)
    if name in ("error_table", "evaluate", "format_table"):
        from ace.fitting import metrics
        return getattr(metrics, name)
    raise AttributeError(f"module 'ace.fitting' has no attribute {name!r}")
