"""A slow pure-numpy ACE evaluator written from the formulas (docs/model.md, sections 1-6).

Independent of the compiled core in every piece that matters: ASE's neighbour list, scipy's
spherical harmonics for all m (no conjugation trick), the full m-space generalized
Clebsch-Gordan sum for each B-function (no half space, no C-tilde merging), and the numpy
formulas of reference_formulas.py. Forces and design-row derivatives come from central finite
differences of this energy.
"""
import numpy as np
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list
from scipy.special import sph_harm_y

from ace.basis.coupling import generalized_cg
from reference_formulas import (core_exponential_reference, cutoff_poly_reference,
                                embedding_reference, radial_base_reference, zbl_reference)


def ytilde(vectors, l, m):
    """sqrt(4 pi) Y_lm(r_hat) for any m, from scipy."""
    r = np.linalg.norm(vectors, axis=1)
    theta = np.arccos(np.clip(vectors[:, 2] / r, -1, 1))
    phi = np.arctan2(vectors[:, 1], vectors[:, 0])
    return np.sqrt(4 * np.pi) * sph_harm_y(l, m, theta, phi)


def atom_bases(pot, mu_i, species_j, vectors):
    """A1[mu, k] and A[(mu, n, l, m)] of one atom."""
    n_el = len(pot.elements)
    a1 = {}
    a = {}
    r = np.linalg.norm(vectors, axis=1)
    for mu in range(n_el):
        bond = pot.bonds[(mu_i, mu)]
        sel = (species_j == mu) & (r < bond.rcut)
        rs, vs = r[sel], vectors[sel]
        g, _ = radial_base_reference(bond.radbase, bond.radparameters[0], bond.rcut, bond.dcut,
                                     bond.nradbase, rs)
        if bond.inner_cutoff_type == "distance":
            f_in, _ = cutoff_poly_reference(rs, bond.r_in, bond.delta_in)
            g = g * (1 - f_in)[:, None]
        for k in range(bond.nradbase):
            a1[(mu, k)] = g[:, k].sum()
        radial = np.einsum("nlk,pk->pnl", bond.crad, g)
        for l in range(bond.lmax + 1):
            for m in range(-l, l + 1):
                y = ytilde(vs, l, m) if len(vs) else np.zeros(0)
                for n in range(bond.nradmax):
                    a[(mu, n, l, m)] = (radial[:, n, l] * y).sum()
    return a1, a


def b_value(f, a1, a):
    if f.rank == 1:
        return a1[(f.mus[0], f.ns[0])]
    ms, coef = generalized_cg(f.ls, f.LS)
    total = 0.0
    for row, c in zip(ms, coef):
        prod = 1.0 + 0j
        for mu, n, l, m in zip(f.mus, f.ns, f.ls, row):
            prod *= a[(mu, n, l, int(m))]
        total += c * prod
    assert abs(total.imag) < 1e-8 * max(1.0, abs(total)), "B must be real"
    return total.real


def core_terms(pot, mu_i, species_j, vectors):
    """(rho_core, blend factor) per docs/model.md, "Core repulsion and the blend"."""
    kind = pot.inner_cutoff_type
    r = np.linalg.norm(vectors, axis=1)
    rho_core, nearest_key, nearest = 0.0, np.inf, None
    for jj, (mu, rr) in enumerate(zip(species_j, r)):
        bond = pot.bonds[(mu_i, mu)]
        if rr >= bond.rcut:
            continue
        if kind == "zbl":
            z_i = atomic_numbers[pot.elements[mu_i]]
            z_j = atomic_numbers[pot.elements[mu]]
            v, _ = zbl_reference(np.array([rr]), z_i, z_j, bond.core_repulsion[0], bond.rcut, bond.dcut)
            rho_core += v[0]
            key = rr - (bond.r_in - bond.delta_in)
            if key < nearest_key:
                nearest_key, nearest = key, (rr, bond)
        else:
            phi, _ = core_exponential_reference(np.array([rr]), *bond.core_repulsion, bond.rcut)
            if kind == "distance":
                phi = phi * cutoff_poly_reference(np.array([rr]), bond.r_in, bond.delta_in)[0]
            rho_core += phi[0]
    if kind == "zbl":
        if nearest is None:
            return 0.0, 1.0
        rr, bond = nearest
        f, _ = cutoff_poly_reference(np.array([bond.r_in - rr]), bond.delta_in, bond.delta_in)
        return rho_core, f[0]
    emb = pot.embeddings[mu_i]
    f, _ = cutoff_poly_reference(np.array([rho_core]), emb.rho_core_cut, emb.drho_core_cut)
    return rho_core, f[0]


def atom_environments(pot, atoms):
    i, j, d = neighbor_list("ijD", atoms, pot.cutoff)
    index = {e: k for k, e in enumerate(pot.elements)}
    species = np.array([index[s] for s in atoms.get_chemical_symbols()])
    for a in range(len(atoms)):
        sel = i == a
        yield a, species[a], species[j[sel]], d[sel]


def per_atom_b(pot, atoms):
    """B values per atom [n_atoms, n_functions] (zero for functions of other elements)."""
    out = np.zeros((len(atoms), pot.n_functions))
    for a, mu_i, species_j, vectors in atom_environments(pot, atoms):
        a1, aa = atom_bases(pot, mu_i, species_j, vectors)
        for k, f in enumerate(pot.functions):
            if f.mu0 == mu_i:
                out[a, k] = b_value(f, a1, aa)
    return out


def energies(pot, atoms):
    """Per-atom energies."""
    out = np.zeros(len(atoms))
    b_atoms = per_atom_b(pot, atoms)
    for a, mu_i, species_j, vectors in atom_environments(pot, atoms):
        emb = pot.embeddings[mu_i]
        rho = b_atoms[a] @ pot.coefficients[:, :emb.ndensity]
        F = sum(embedding_reference(emb.npot, emb.fs_parameters[2 * p], emb.fs_parameters[2 * p + 1],
                                    np.array([rho[p]]))[0][0] for p in range(emb.ndensity))
        rho_core, blend = core_terms(pot, mu_i, species_j, vectors)
        if pot.inner_cutoff_type == "zbl":
            out[a] = F * blend + (1 - blend) * rho_core + pot.e0[mu_i]
        else:
            out[a] = F * blend + rho_core + pot.e0[mu_i]
    return out


def blend_factors(pot, atoms):
    return np.array([core_terms(pot, mu_i, sj, v)[1] for _, mu_i, sj, v in atom_environments(pot, atoms)])


def finite_difference(function, atoms, h=1e-5):
    """-d function(atoms)/dr by central differences: [n_atoms, 3, ...]."""
    rows = []
    for a in range(len(atoms)):
        for c in range(3):
            work = atoms.copy()
            work.positions[a, c] += h
            plus = function(work)
            work.positions[a, c] -= 2 * h
            minus = function(work)
            rows.append(-(plus - minus) / (2 * h))
    return np.array(rows).reshape(len(atoms), 3, *np.shape(rows[0]))
