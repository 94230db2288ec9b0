"""ace: Atomic Cluster Expansion interatomic potentials with a Cython/OpenMP core.

The library's functions (``ace.fit``, ``ace.estimate_fit``, ``ace.evaluate``, ``ace.load``,
``ace.export``, ``ace.describe``) are those of :mod:`ace.api`; with ``ACECalculator`` and
``ACEPotential`` they are imported on first use, so that ``import ace`` stays cheap and free of
compiled-module side effects.
"""
__version__ = "0.1.0"

_API = ("fit", "estimate_fit", "evaluate", "load", "export", "describe", "FitConfig",
        "FitResult", "FitEstimate")
__all__ = ["ACECalculator", "ACEPotential", *_API]


def __getattr__(name):
    if name == "ACECalculator":
        from ace.calculator import ACECalculator
        return ACECalculator
    if name == "ACEPotential":
        from ace.potential import ACEPotential
        return ACEPotential
    if name in _API:
        from ace import api
        return getattr(api, name)
    raise AttributeError(f"module 'ace' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
