"""ace: Atomic Cluster Expansion interatomic potentials with a Cython/OpenMP core."""
__version__ = "0.1.0"

__all__ = ["ACECalculator", "ACEPotential"]


def __getattr__(name):
    # lazy, so that `import ace` stays cheap and free of compiled-module side effects
    if name == "ACECalculator":
        from ace.calculator import ACECalculator
        return ACECalculator
    if name == "ACEPotential":
        from ace.potential import ACEPotential
        return ACEPotential
    raise AttributeError(f"module 'ace' has no attribute {name!r}")
