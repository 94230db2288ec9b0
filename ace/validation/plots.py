"""Figures of the validation report (matplotlib, the optional ``plot`` extra, Agg backend).

Each function draws one PNG from the numbers the property routines return, one colour per
potential, and returns the file name. Without matplotlib :func:`pyplot` raises
:class:`PlotUnavailable` with the install hint; the report then has no figures but all numbers.
"""
from __future__ import annotations

import os

import numpy as np

INSTALL_HINT = ("matplotlib is not installed, so the report has no figures (the properties and "
                "the JSON are complete): install ace[plot] (pip install 'ace[plot]') for them")
DPI = 90


class PlotUnavailable(ImportError):
    """matplotlib is missing."""


def pyplot():
    """matplotlib.pyplot on the Agg backend, or PlotUnavailable with the install hint."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable(INSTALL_HINT) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def colours(n):
    plt = pyplot()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[k % len(cycle)] for k in range(n)]


def save(fig, output_dir, name):
    path = os.path.join(output_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return name


def eos_figure(results, output_dir, reference=None):
    """E - E0 against volume per atom for every potential (points: the computed volumes;
    lines: the Birch-Murnaghan fit)."""
    from ase.eos import birchmurnaghan
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for colour, (name, eos) in zip(colours(len(results)), results.items()):
        v = np.array(eos["volumes"])
        e = np.array(eos["energies"])
        grid = np.linspace(v.min(), v.max(), 200)
        fit = birchmurnaghan(grid, eos["E0"], eos["B0"] * _gpa(), eos["B0_prime"], eos["V0"])
        ax.plot(v, (e - eos["E0"]) * 1000, "o", color=colour, ms=4)
        ax.plot(grid, (fit - eos["E0"]) * 1000, "-", color=colour,
                label=f"{name}: B0 {eos['B0']:.0f} GPa, V0 {eos['V0']:.2f} Å³")
    if reference and reference.get("atomic_volume"):
        ax.axvline(reference["atomic_volume"], color="k", ls=":", label="reference V0")
    ax.set_xlabel("volume per atom (Å³)")
    ax.set_ylabel("E − E0 (meV/atom)")
    ax.set_title("equation of state (Birch–Murnaghan fit)")
    ax.legend(fontsize=8)
    return save(fig, output_dir, "eos.png")


def _gpa():
    from ase import units
    return units.GPa


def elastic_figure(values, references, output_dir, names=("C11", "C12", "C44", "bulk_modulus")):
    """Grouped bars of the elastic constants of each potential beside the reference."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    potentials = list(values)
    series = potentials + (["reference"] if any(references.get(k) is not None
                                                 for k in names) else [])
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for k, (label, colour) in enumerate(zip(series, colours(len(series) - 1) + ["0.3"]
                                          if "reference" in series else colours(len(series)))):
        if label == "reference":
            heights = [references.get(n) for n in names]
        else:
            heights = [values[label].get(n) for n in names]
        heights = [np.nan if h is None else h for h in heights]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=label, color=colour)
    ax.set_xticks(x, ["C11", "C12", "C44", "B0 (EOS)"][:len(names)])
    ax.set_ylabel("elastic constant (GPa)")
    ax.set_title("elastic constants (stress–strain, relaxed ions)")
    ax.legend(fontsize=8)
    return save(fig, output_dir, "elastic.png")


def phonon_figure(results, output_dir):
    """The dispersion of each potential in its own panel, imaginary modes below zero."""
    plt = pyplot()
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False, sharey=True)
    for ax, colour, (name, ph) in zip(axes[0], colours(n), results.items()):
        x = np.array(ph["distances"])
        freq = np.array(ph["frequencies"])
        # a break in the path (",") repeats a distance: no line across it
        breaks = np.flatnonzero(np.diff(x) == 0) + 1
        for segment_x, segment_f in zip(np.split(x, breaks), np.split(freq, breaks)):
            ax.plot(segment_x, segment_f, color=colour, lw=1)
        ticks, labels = [], []
        for position, symbol in zip(ph["special_distances"], ph["labels"]):
            if ticks and abs(position - ticks[-1]) < 1e-9:
                labels[-1] += "|" + _label(symbol)
            else:
                ticks.append(position)
                labels.append(_label(symbol))
        for position in ticks:
            ax.axvline(position, color="0.8", lw=0.6)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(ticks, labels)
        ax.set_xlim(ph["distances"][0], ph["distances"][-1])
        flag = " (imaginary modes!)" if ph["imaginary_modes"] else ""
        ax.set_title(f"{name}{flag}", fontsize=9)
    axes[0][0].set_ylabel("frequency (THz)")
    return save(fig, output_dir, "phonons.png")


def _label(symbol):
    return "Γ" if symbol == "G" else symbol


def dimer_figure(results, output_dir, shortest_data_distance=None):
    """E(r) - E(separated) of the dimer, zoomed so that the well and the wall both show."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    lowest = 0.0
    for colour, (name, dimer) in zip(colours(len(results)), results.items()):
        r, e = np.array(dimer["distances"]), np.array(dimer["energies"])
        lowest = min(lowest, e.min())
        verdict = "repulsive, monotonic" if dimer["repulsive"] and dimer["monotonic"] else (
            ("not repulsive" if not dimer["repulsive"] else "repulsive")
            + (", not monotonic" if not dimer["monotonic"] else ""))
        ax.plot(r, e, color=colour, label=f"{name} ({verdict} below {dimer['check_below']:.2f} Å)")
    if shortest_data_distance:
        ax.axvline(shortest_data_distance, color="k", ls=":",
                   label=f"shortest distance in the data ({shortest_data_distance:.2f} Å)")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_ylim(lowest * 1.3 - 1.0, max(10.0, -3 * lowest))
    ax.set_xlabel("distance r (Å)")
    ax.set_ylabel("E(r) − E(∞) (eV)")
    ax.set_title("dimer curve")
    ax.legend(fontsize=7)
    return save(fig, output_dir, "dimer.png")


def md_figure(nve, nvt, output_dir):
    """Left: NVE total-energy change; right: NVT temperatures at each target temperature."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(nve) or list(nvt)
    for colour, name in zip(colours(len(names)), names):
        if name in nve:
            run = nve[name]
            left.plot(run["times"], np.array(run["total_energy"]) * 1000, color=colour,
                      label=f"{name}: drift {run['value']:.3g} meV/atom/ps")
        for k, run in enumerate(nvt.get(name, [])):
            style = ("-", "--", ":")[k % 3]
            status = "stable" if run["stable"] else "UNSTABLE"
            right.plot(run["times"], run["temperatures"], style, color=colour,
                       label=f"{name}, {run['temperature']:.0f} K: {status}")
    left.set_xlabel("time (ps)")
    left.set_ylabel("E_total − E_total(0) (meV/atom)")
    left.set_title("NVE (velocity Verlet)")
    right.set_xlabel("time (ps)")
    right.set_ylabel("temperature (K)")
    right.set_title("NVT (Langevin) near and above melting")
    for ax in (left, right):
        if ax.lines:
            ax.legend(fontsize=7)
    return save(fig, output_dir, "md.png")


def strain_figure(dft, fits, output_dir):
    """Energy density against the largest strain component of the data's strained crystals:
    DFT and each potential on the same structures (atoms where the data put them), each
    series relative to its own minimum (the potentials' E0 offsets would hide the curvature)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    strains = np.array(dft["strains"])
    kind = np.where(np.abs(strains[:, 3:]).max(axis=1) > np.abs(strains[:, :3]).max(axis=1),
                    "shear", "normal")
    signed = np.array([s[np.argmax(np.abs(s))] for s in strains])
    scale = 1000.0 / _gpa()  # eV/Å³ -> MJ/m³ (1 GPa = 1 GJ/m³)
    for marker, label in (("o", "normal"), ("s", "shear")):
        pick = kind == label
        u = np.array(dft["energy_density"])
        ax.plot(signed[pick], (u[pick] - u.min()) * scale,
                marker, color="k", mfc="none", ms=7, label=f"DFT ({label} strains)")
    for colour, (name, fit) in zip(colours(len(fits)), fits.items()):
        for marker, label in (("o", "normal"), ("s", "shear")):
            pick = kind == label
            u = np.array(fit["energy_density"])
            ax.plot(signed[pick], (u[pick] - u.min()) * scale,
                    marker, color=colour, ms=3.5, label=f"{name} ({label})")
    ax.set_xlabel("largest Green–Lagrange strain component")
    ax.set_ylabel("energy density − its minimum (MJ/m³)")
    ax.set_title("the data's strained crystals")
    ax.legend(fontsize=7)
    return save(fig, output_dir, "strains.png")
