"""The potentials on labelled data: error tables per config_type (``ace.fitting.metrics``),
parity plots, error distributions and the force error against each atom's nearest-neighbour
distance, one colour per potential."""
from __future__ import annotations

import numpy as np
from ase import units

from ace.fitting.metrics import VOIGT, error_table, predict
from ace.neighbours import build_neighbour_list
from ace.validation.plots import colours, pyplot, save

NEIGHBOUR_SEARCH = 6.0  # Å: the nearest neighbour of every atom of a condensed structure
FIRST_SEARCH = 3.5  # Å: holds the nearest neighbour of nearly every atom; a cheaper list


def nearest_neighbour_distances(dataset):
    """[n_atoms] distance from each atom to its nearest neighbour (inf when none within
    NEIGHBOUR_SEARCH Å)."""
    out = np.full(dataset.total_atoms, np.inf)
    for s in range(len(dataset)):
        atoms = dataset.atoms(s)
        # ace's compiled list: ASE's took 20 of the 27 s of a quick validation of mlearn Mo;
        # the full radius only for structures with an atom alone within the first
        for radius in (FIRST_SEARCH, NEIGHBOUR_SEARCH):
            nl = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, radius)
            shortest = np.full(len(atoms), np.inf)
            np.minimum.at(shortest, nl.i, np.linalg.norm(nl.vectors, axis=1))
            if np.isfinite(shortest).all():
                break
        out[dataset.atom_slice(s)] = shortest
    return out


def evaluate_on_data(potentials, dataset, num_threads=None, progress=None, known=None):
    """{name: (predictions, error table)} of every potential on ``dataset``; ``known``:
    {name: predictions} already computed."""
    results = {}
    for name, potential in potentials.items():
        predictions = (known or {}).get(name)
        if predictions is None:
            predictions = predict(potential, dataset, num_threads, progress)
        results[name] = (predictions, error_table(dataset, predictions))
    return results


def data_figures(dataset, results, output_dir, nn_distances=None):
    """parity.png, errors.png and force_vs_distance.png; their file names."""
    plt = pyplot()
    names = list(results)
    cs = colours(len(names))
    has_stress = bool(dataset.has_stress.any())
    n_panels = 3 if has_stress else 2
    n_atoms = dataset.n_atoms

    fig, axes = plt.subplots(1, n_panels, figsize=(4.3 * n_panels, 4.1))
    reference = {"energy": dataset.energy / n_atoms, "forces": dataset.forces.ravel()}
    if has_stress:
        known = dataset.has_stress
        reference["stress"] = dataset.stress[known][:, VOIGT[0], VOIGT[1]].ravel() / units.GPa
    labels = {"energy": "energy (eV/atom)", "forces": "force component (eV/Å)",
              "stress": "stress component (GPa)"}
    for ax, key in zip(axes, ("energy", "forces", "stress")):
        ref = reference[key]
        for colour, name in zip(cs, names):
            pred = _predicted(results[name][0], key, dataset)
            ok = np.isfinite(ref) & np.isfinite(pred)
            ax.plot(ref[ok], pred[ok], ".", color=colour, ms=2.5, alpha=0.6, label=name,
                    rasterized=True)
        finite = ref[np.isfinite(ref)]
        lo, hi = finite.min(), finite.max()
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.7)
        ax.set_xlabel(f"DFT {labels[key]}")
        ax.set_ylabel(f"predicted {labels[key]}")
        ax.set_title(f"{key} parity")
        ax.legend(fontsize=7, markerscale=3)
    files = [save(fig, output_dir, "parity.png")]

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    for colour, name in zip(cs, names):
        pred = results[name][0]
        de = (pred.energy - dataset.energy) / n_atoms * 1000
        df = (pred.forces - dataset.forces).ravel()
        df = df[np.isfinite(df)]
        left.hist(de, bins=60, histtype="step", color=colour, label=name)
        right.hist(df, bins=80, histtype="step", color=colour, label=name)
    left.set_xlabel("energy error (meV/atom)")
    right.set_xlabel("force component error (eV/Å)")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    left.set_title("energy error distribution")
    right.set_title("force error distribution")
    files.append(save(fig, output_dir, "errors.png"))

    if nn_distances is None:
        nn_distances = nearest_neighbour_distances(dataset)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    finite = np.isfinite(nn_distances)
    edges = np.quantile(nn_distances[finite], np.linspace(0, 1, 13))
    edges = np.unique(np.round(edges, 3))
    centres = 0.5 * (edges[1:] + edges[:-1])
    for colour, name in zip(cs, names):
        error = np.linalg.norm(results[name][0].forces - dataset.forces, axis=1)
        ok = finite & np.isfinite(error)
        which = np.clip(np.digitize(nn_distances[ok], edges) - 1, 0, len(centres) - 1)
        mean = np.array([error[ok][which == b].mean() if (which == b).any() else np.nan
                         for b in range(len(centres))])
        ax.plot(nn_distances[ok], error[ok], ".", color=colour, ms=1.5, alpha=0.25,
                rasterized=True)
        ax.plot(centres, mean, "o-", color=colour, label=f"{name} (bin mean)")
    ax.set_xlabel("nearest-neighbour distance of the atom (Å)")
    ax.set_ylabel("|F_pred − F_DFT| (eV/Å)")
    ax.set_title("force error against the nearest-neighbour distance")
    ax.legend(fontsize=7)
    files.append(save(fig, output_dir, "force_vs_distance.png"))
    return files


def _predicted(predictions, key, dataset):
    if key == "energy":
        return predictions.energy / dataset.n_atoms
    if key == "forces":
        return predictions.forces.ravel()
    known = dataset.has_stress
    return predictions.stress[known][:, VOIGT[0], VOIGT[1]].ravel() / units.GPa
