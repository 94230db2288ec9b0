"""Basis specification, enumeration of the coupled B-functions and the C-tilde folding."""
from ace.basis.coupling import (
    MAX_RANK, coupling_tree, generalized_cg, half_space, independent_couplings, max_lmax,
    valid_intermediates)
from ace.basis.ctilde import CTildeFunction, bfunction_ms_coefficients, to_ctilde
from ace.basis.model import BFunction, Bond, Embedding
from ace.basis.spec import ACEBasis, BasisSpec, build_basis, power_order

__all__ = [
    "ACEBasis", "BasisSpec", "BFunction", "Bond", "CTildeFunction", "Embedding", "MAX_RANK",
    "bfunction_ms_coefficients", "build_basis", "coupling_tree", "generalized_cg",
    "half_space", "independent_couplings", "max_lmax", "power_order", "to_ctilde",
    "valid_intermediates",
]
