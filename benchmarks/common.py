"""Timing and memory helpers shared by the benchmarks.

``repeat_timing`` runs a callable after warm-up calls and returns every wall time, so callers
report the median (robust to a noisy shared machine) and can show the spread.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Wall times (and process CPU times, all threads) of repeated calls, in seconds."""

    times: list
    cpu_times: list = field(default_factory=list)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times) if self.cpu_times else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median: a rough noise indicator."""
        return (max(self.times) - min(self.times)) / self.median if self.median > 0 else 0.0

    def __repr__(self):
        return f"Timing(median={self.median:.4g} s, n={len(self.times)}, spread={self.spread:.1%})"


def repeat_timing(function, repeats=5, warmup=1) -> Timing:
    """Call ``function()`` ``warmup`` times untimed, then ``repeats`` times timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        function()
    timing = Timing([], [])
    for _ in range(repeats):
        _timed_call(function, timing)
    return timing


def interleaved_timing(functions, repeats=5, warmup=1) -> dict:
    """Time several callables round-robin: {name: Timing}.

    Each round calls every function once, so a change of machine load during the run affects
    all of them alike (the machine is shared; this matters more than the order of calls).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for function in functions.values():
        for _ in range(warmup):
            function()
    timings = {name: Timing([], []) for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            _timed_call(function, timings[name])
    return timings


def _timed_call(function, timing):
    cpu = time.process_time()
    start = time.perf_counter()
    function()
    timing.times.append(time.perf_counter() - start)
    timing.cpu_times.append(time.process_time() - cpu)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def current_rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def machine_description() -> str:
    """CPU model, logical cores visible to this process, OS and Python version."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {cores} logical cores, load {load:.2f}; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}")


def source_version(path) -> str:
    """``git describe``-like id of the checkout holding ``path`` (``+dirty`` if modified)."""
    import subprocess
    directory = os.path.dirname(os.path.abspath(path))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=directory,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ace"], cwd=directory,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def format_table(header, rows) -> str:
    """A plain-text table with columns padded to their widest cell (first column left-aligned)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(header))]

    def line(row):
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w)
                         for k, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def modules_available(disabled, *names):
    """False if ``disabled`` or any of the modules cannot be imported (optional peers)."""
    import importlib

    if disabled:
        return False
    try:
        for name in names:
            importlib.import_module(name)
    except ImportError:
        return False
    return True

