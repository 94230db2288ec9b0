"""Fitting ACE potentials: the loss and linear solver, error tables, the fit configuration."""
from __future__ import annotations

__all__ = ["fit_linear", "LossSettings", "LinearFit", "error_table", "evaluate", "format_table",
           "progress_bar"]


def progress_bar(enabled=True):
    """A ``progress(iterable, description)`` wrapper: a tqdm bar when tqdm is installed and
    ``enabled``, else None (no bar). tqdm is optional."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None

    def progress(iterable, description):
        return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)

    return progress


def __getattr__(name):
    # lazy: `import ace.fit` stays cheap and free of compiled-module imports
    if name in ("fit_linear", "LossSettings", "LinearFit"):
        from ace.fit import linear
        return getattr(linear, name)
    if name in ("error_table", "evaluate", "format_table"):
        from ace.fit import metrics
        return getattr(metrics, name)
    raise AttributeError(f"module 'ace.fit' has no attribute {name!r}")
