"""ace: Atomic Cluster Expansion interatomic potentials with a Cython/OpenMP core."""
__version__ = "0.1.0"
