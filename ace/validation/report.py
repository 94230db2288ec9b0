"""``validate``: properties of one or several potentials, side by side, against references;
writes ``report.md`` with PNG figures and the JSON report.

JSON schema (``SCHEMA_VERSION`` 1)::

    {"schema_version": 1,
     "settings": {...},                      # structure, element, reference, data, quick, ...
     "references": {PROPERTY: {"value", "unit", "source"}},
     "potentials": {NAME: {
         "file": path or null, "seconds": runtime,
         "properties": {PROPERTY: {"value": x, "unit": u, "reference": r or null,
                                  "relative_error": (x - r) / |r| or null,
                                  "reference_source": text or null}},
         "checks": {...},                    # elastic step convergence, imaginary modes, ...
         "details": {...},                   # curves: E-V, elastic tensor, phonons, dimer, MD
         "data_errors": error table or null}},   # ace.fitting.metrics.error_table
     "figures": [file names], "notes": [text]}

Property names: lattice_constant (lattice_constant_c for hcp), atomic_volume, bulk_modulus
(EOS), bulk_modulus_derivative, C11, C12, C44 (cubic; other lattices C_ij for all i <= j),
vacancy_formation_energy, surface_energy_100/110/111 (cubic; hcp: surface_energy_0001),
min_phonon_frequency, max_phonon_frequency, nve_drift, and with data C11_data_strains and
C44_data_strains (fits to the energies of the data's strained crystals).
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from ace.validation import properties as props
from ace.validation.plots import PlotUnavailable, pyplot
from ace.validation.references import (UNITS, data_lattice_constant,
                                     load_reference, strain_fit_data, strained_crystals)

SCHEMA_VERSION = 1
SURFACES = {"bcc": ((1, 0, 0), (1, 1, 0), (1, 1, 1)), "fcc": ((1, 0, 0), (1, 1, 0), (1, 1, 1)),
            "diamond": ((1, 0, 0), (1, 1, 0), (1, 1, 1)), "hcp": ((0, 0, 1),)}
DEFAULT_MELTING_POINT = 1500.0  # K, only when no reference gives one
NVE_TEMPERATURE = 300.0  # K
NVT_FACTORS = (1.0, 1.5)  # of the melting point


def _log_default(message):
    print(message, flush=True)


def validate(potentials, data=None, reference=None, structure=None, output_dir="validation",
             json_path=None, quick=False, num_threads=None, keys=None, log=_log_default,
             md_steps=None, plots=True, predictions=None):
    """Validate ``potentials`` and write the report; returns the report dict.

    potentials: a path, a potential, or a list of them, or a dict {name: path or potential}.
    data: data files (any ``ace.data.read_dataset`` source) or a ``Dataset``; gives the error
      tables and figures, the shortest distance for the dimer and MD checks, and, without
      ``reference``, reference values from its strained crystals.
    reference: a reference YAML path (``potentials/references/Mo.yaml``) or None.
    structure: "bcc", "fcc", "diamond", "hcp" or a structure file; default: the reference's,
      else ASE's reference state of the element.
    quick: data figures, EOS and elastic constants only (what ``ace fit`` runs after a fit).
    json_path: where to write the JSON (default ``output_dir/report.json``).
    md_steps: (NVE steps, NVT steps per temperature), default (500, 400).
    predictions: {name: ace.fitting.metrics.Predictions} of potentials on ``data`` already
      computed (the others are evaluated).
    """
    from ace.calculator import ACECalculator, load_potential
    from ace.data import Dataset, read_dataset

    start = time.perf_counter()
    named = _named_potentials(potentials)
    loaded = {name: load_potential(source) for name, source in named.items()}
    elements = sorted({e for p in loaded.values() for e in p.elements})
    ref = load_reference(reference) if isinstance(reference, (str, os.PathLike)) else reference
    dataset = None
    if data is not None:
        dataset = data if isinstance(data, Dataset) else read_dataset(data, keys)
        dataset.check_elements(elements)
    crystal, structure_name, element = _crystal(structure, ref, elements)
    os.makedirs(output_dir, exist_ok=True)
    notes = []
    nve_steps, nvt_steps = md_steps or (500, 400)

    melting = (ref or {}).get("properties", {}).get("melting_point", {}).get("value")
    if melting is None:
        melting = DEFAULT_MELTING_POINT
        if not quick:
            notes.append(f"no melting point in the reference: NVT runs at {melting:.0f} K and "
                         f"{melting * NVT_FACTORS[-1]:.0f} K")

    data_info = (_data_summary(dataset, loaded, num_threads, log, predictions)
                 if dataset is not None else None)
    shortest_data = data_info["shortest_distance"] if data_info else None

    report = {"schema_version": SCHEMA_VERSION,
              "settings": {"structure": structure_name, "element": element, "quick": bool(quick),
                           "reference": ref["path"] if ref else None,
                           "data": _data_label(data, dataset), "num_threads": num_threads,
                           "melting_point": melting},
              "references": {}, "potentials": {}, "figures": [], "notes": notes}
    curves = {"eos": {}, "phonons": {}, "dimer": {}, "nve": {}, "nvt": {}, "elastic": {},
              "strains": {}}
    strain_dft = None
    for name, potential in loaded.items():
        t0 = time.perf_counter()
        log(f"{name}: relaxing {structure_name} {element}")
        calc = ACECalculator(potential, num_threads=num_threads)
        entry = {"file": os.fspath(named[name]) if isinstance(named[name], (str, os.PathLike))
                 else None, "properties": {}, "checks": {}, "details": {}, "data_errors": None}
        values = {}
        relaxed = props.relax_crystal(crystal, calc)
        constants = props.lattice_constants(relaxed, structure_name)
        values["lattice_constant"] = constants["a"]
        if "c" in constants and structure_name == "hcp":
            values["lattice_constant_c"] = constants["c"]
        log(f"{name}: equation of state")
        eos = props.equation_of_state(relaxed, calc)
        values.update(atomic_volume=eos["V0"], bulk_modulus=eos["B0"],
                      bulk_modulus_derivative=eos["B0_prime"])
        entry["details"]["eos"] = eos
        curves["eos"][name] = eos
        log(f"{name}: elastic constants")
        elastic = props.elastic_constants(relaxed, calc, structure_name)
        entry["details"]["elastic"] = elastic
        entry["checks"]["elastic_step_convergence"] = elastic["step_convergence"]
        entry["checks"]["elastic_converged"] = elastic["converged"]
        if "C11" in elastic:
            values.update(C11=elastic["C11"], C12=elastic["C12"], C44=elastic["C44"])
            curves["elastic"][name] = {"C11": elastic["C11"], "C12": elastic["C12"],
                                       "C44": elastic["C44"], "bulk_modulus": eos["B0"]}
        else:
            tensor = np.array(elastic["tensor"])
            for i in range(6):
                for j in range(i, 6):
                    values[f"C{i + 1}{j + 1}"] = float(tensor[i, j])
        if data_info is not None:
            entry["data_errors"] = data_info["tables"][name]
            fits = _strain_fits(dataset, data_info, name, relaxed, structure_name)
            if fits:
                strain_dft = fits["dft"]
                curves["strains"][name] = fits["potential"]
                for key in ("C11", "C44"):
                    if fits["potential"]["fit"].get(key) is not None:
                        values[f"{key}_data_strains"] = fits["potential"]["fit"][key]
        if not quick:
            _full_properties(entry, values, curves, name, relaxed, calc, potential, element,
                             structure_name, shortest_data, melting, nve_steps, nvt_steps, log)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["_values"] = values
        report["potentials"][name] = entry
        log(f"{name}: done in {entry['seconds']:.0f} s")

    references = _references(ref, dataset, data_info, strain_dft, crystal, structure_name,
                             report)
    report["references"] = references
    for entry in report["potentials"].values():
        entry["properties"] = _compare(entry.pop("_values"), references)
    if data_info is not None and strain_dft is not None:
        report["settings"]["data_strain_fit"] = {
            "structures": len(strain_dft["indices"]),
            "lattice_constant": data_info.get("lattice_constant")}

    if plots:
        report["figures"] = _figures(report, curves, dataset, data_info, strain_dft, references,
                                     output_dir, shortest_data, notes, log)
    report["settings"]["seconds"] = round(time.perf_counter() - start, 1)
    write_markdown(report, os.path.join(output_dir, "report.md"))
    json_path = json_path or os.path.join(output_dir, "report.json")
    write_json(report, json_path)
    return report


def quick_validate(potential, data=None, output_dir=None, reference=None, structure=None,
                   num_threads=None, log=_log_default, name=None, predictions=None):
    """The quick validation ``ace fit`` runs after a fit: data figures and error tables, EOS,
    elastic constants. ``output_dir`` defaults to ``<potential file without .yaml>.validation``
    beside the potential file. ``predictions``: the potential's predictions on ``data``
    (``ace.fitting.metrics.Predictions``), when the caller has them already. Returns the
    report dict."""
    if output_dir is None:
        if not isinstance(potential, (str, os.PathLike)):
            raise ValueError("quick_validate needs output_dir when given a potential object")
        output_dir = os.path.splitext(os.fspath(potential))[0] + ".validation"
    sources = {name: potential} if name else potential
    known = None
    if predictions is not None:
        known = {only: predictions for only in _named_potentials(sources)}
    return validate(sources, data=data, reference=reference, structure=structure,
                    output_dir=output_dir, quick=True, num_threads=num_threads, log=log,
                    predictions=known)


# ----------------------------------------------------------------------------- pieces

def _named_potentials(potentials):
    if isinstance(potentials, dict):
        return dict(potentials)
    if isinstance(potentials, (str, os.PathLike)) or not isinstance(potentials, (list, tuple)):
        potentials = [potentials]
    named = {}
    for k, source in enumerate(potentials):
        if isinstance(source, (str, os.PathLike)):
            base = os.path.splitext(os.path.basename(os.fspath(source)))[0]
        else:
            base = f"potential{k + 1}"
        name, n = base, 2
        while name in named:
            name, n = f"{base}-{n}", n + 1
        named[name] = source
    if not named:
        raise ValueError("no potential given")
    return named


def _crystal(structure, ref, elements):
    """(conventional cell to relax, structure name, element)."""
    from ase.io import read
    if structure is not None and structure not in props.STRUCTURES:
        if not os.path.exists(os.fspath(structure)):
            raise ValueError(f"{structure}: not a structure name ({', '.join(props.STRUCTURES)}) "
                             "nor an existing structure file")
        atoms = read(structure)
        symbols = sorted(set(atoms.get_chemical_symbols()))
        missing = sorted(set(symbols) - set(elements))
        if missing:
            raise ValueError(f"{structure}: element(s) {missing} are not in the potential "
                             f"(its elements: {elements})")
        return atoms, os.path.basename(os.fspath(structure)), symbols[0]
    if len(elements) != 1:
        raise ValueError(f"the potentials have {len(elements)} elements {elements}: give a "
                         "structure file (--structure FILE) to compute properties")
    element = elements[0]
    if ref and ref.get("element") and ref["element"] != element:
        raise ValueError(f"{ref['path']}: reference for {ref['element']}, but the potential is "
                         f"for {element}")
    if structure is None:
        structure = (ref or {}).get("structure")
    if structure is None:
        from ase.data import atomic_numbers, reference_states
        state = reference_states[atomic_numbers[element]] or {}
        structure = state.get("symmetry")
        if structure not in props.STRUCTURES:
            raise ValueError(f"{element}: its ground-state lattice is not one of "
                             f"{', '.join(props.STRUCTURES)}; give --structure")
    lattice = (ref or {}).get("properties", {}).get("lattice_constant", {}).get("value")
    return props.prototype(element, structure, lattice), structure, element


def _data_summary(dataset, potentials, num_threads, log, predictions=None):
    from ace.validation.data_plots import evaluate_on_data, nearest_neighbour_distances
    log(f"data: {dataset}")
    results = evaluate_on_data(potentials, dataset, num_threads, known=predictions)
    nn = nearest_neighbour_distances(dataset)
    finite = nn[np.isfinite(nn)]
    return {"results": results, "tables": {n: r[1] for n, r in results.items()},
            "nn_distances": nn,
            "shortest_distance": float(finite.min()) if finite.size else None}


def _data_label(data, dataset):
    if dataset is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, (list, tuple)):
        return [os.fspath(d) for d in data]
    return f"{len(dataset)} structures"


def _strain_fits(dataset, data_info, name, relaxed, structure_name):
    """The cubic strain fit of DFT and of the potential on the data's strained crystals."""
    if structure_name not in props.CUBIC:
        return None
    crystals = strained_crystals(dataset, relaxed)
    if not crystals:
        return None
    a_data = data_lattice_constant(dataset, crystals, relaxed)
    if a_data is None:
        return None
    data_info["lattice_constant"] = a_data
    predicted = data_info["results"][name][0].energy
    dft = strain_fit_data(dataset, dataset.energy, crystals, relaxed, a_data)
    model = strain_fit_data(dataset, predicted, crystals, relaxed, a_data)
    if dft is None or model is None:
        return None
    return {"dft": _plain_fit(dft), "potential": _plain_fit(model)}


def _plain_fit(fit):
    return {"indices": [int(i) for i in fit["indices"]], "strains": fit["strains"].tolist(),
            "energy_density": fit["energy_density"].tolist(), "fit": fit["fit"]}


def _full_properties(entry, values, curves, name, relaxed, calc, potential, element,
                     structure_name, shortest_data, melting, nve_steps, nvt_steps, log):
    log(f"{name}: vacancy")
    vacancy = props.vacancy_formation_energy(relaxed, calc)
    values["vacancy_formation_energy"] = vacancy["value"]
    entry["details"]["vacancy"] = vacancy
    for miller in SURFACES.get(structure_name, ()):
        label = "".join(str(m) for m in miller) if structure_name != "hcp" else "0001"
        log(f"{name}: surface ({label})")
        result = props.surface_energy(relaxed, calc, miller)
        values[f"surface_energy_{label}"] = result["value"]
        entry["details"][f"surface_{label}"] = result
    if structure_name in props.STRUCTURES:
        log(f"{name}: phonons")
        phonons = props.phonon_dispersion(props.primitive_cell(relaxed, structure_name, element),
                                          calc, potential.cutoff)
        values["min_phonon_frequency"] = phonons["min_frequency"]
        values["max_phonon_frequency"] = phonons["max_frequency"]
        entry["checks"]["phonons_real"] = not phonons["imaginary_modes"]
        entry["details"]["phonons"] = phonons
        curves["phonons"][name] = phonons
    log(f"{name}: dimer")
    dimer = props.dimer_curve(element, calc, potential.cutoff, shortest_data)
    entry["details"]["dimer"] = dimer
    entry["checks"]["dimer_repulsive"] = dimer["repulsive"]
    entry["checks"]["dimer_monotonic"] = dimer["monotonic"]
    curves["dimer"][name] = dimer
    log(f"{name}: NVE, {nve_steps} steps")
    nve = props.nve_drift(relaxed, calc, NVE_TEMPERATURE, steps=nve_steps)
    values["nve_drift"] = nve["value"]
    entry["details"]["nve"] = nve
    curves["nve"][name] = nve
    nearest = _nearest_neighbour(relaxed)
    shortest_allowed = 0.8 * (shortest_data if shortest_data else 0.75 * nearest)
    runs = []
    for factor in NVT_FACTORS:
        temperature = melting * factor
        log(f"{name}: NVT at {temperature:.0f} K, {nvt_steps} steps")
        runs.append(props.nvt_stability(relaxed, calc, temperature, shortest_allowed,
                                        steps=nvt_steps))
    entry["details"]["nvt"] = runs
    entry["checks"]["nvt_stable"] = {f"{r['temperature']:.0f} K": r["stable"] for r in runs}
    curves["nvt"][name] = runs


def _nearest_neighbour(atoms):
    from ase.neighborlist import neighbor_list
    d = neighbor_list("d", atoms, 5.0)
    return float(d.min())


def _references(ref, dataset, data_info, strain_dft, crystal, structure_name, report):
    """Reference values: the file's, else (and for what it lacks) the data's."""
    references = {}
    if data_info is not None and strain_dft is not None:
        source = "training data: the data's strained crystals"
        if data_info.get("lattice_constant") is not None:
            references["lattice_constant"] = {
                "value": data_info["lattice_constant"], "unit": "Å",
                "source": f"{source} (their unstrained cell)"}
        for key in ("C11", "C44"):
            value = strain_dft["fit"].get(key)
            if value is not None:
                references[f"{key}_data_strains"] = {
                    "value": value, "unit": "GPa",
                    "source": f"{source}: fit of the DFT energies, atoms where the data put "
                              "them (the potentials are fitted on the same structures)"}
        if strain_dft["fit"].get("C12") is None:
            report["notes"].append("the data's strained crystals do not determine C12 (uniaxial "
                                   "strains and shears only): C12 and B are extrapolations that "
                                   "the data do not check")
    if ref:
        for key, entry in ref["properties"].items():
            references[key] = {"value": entry["value"], "unit": entry["unit"],
                               "source": entry.get("source")}
    return references


def _compare(values, references):
    properties = {}
    for key, value in values.items():
        ref = references.get(key)
        r = ref["value"] if ref else None
        rel = (value - r) / abs(r) if r not in (None, 0) and value is not None else None
        properties[key] = {"value": None if value is None else float(value),
                           "unit": UNITS.get(key, "GPa" if key.startswith("C") else ""),
                           "reference": r, "relative_error": rel,
                           "reference_source": ref.get("source") if ref else None}
    return properties


def _figures(report, curves, dataset, data_info, strain_dft, references, output_dir,
             shortest_data, notes, log):
    from ace.validation import plots
    try:
        pyplot()
    except PlotUnavailable as exc:
        notes.append(str(exc))
        log(f"note: {exc}")
        return []
    files = []
    ref_values = {k: v["value"] for k, v in references.items()}
    files.append(plots.eos_figure(curves["eos"], output_dir, ref_values))
    if curves["elastic"]:
        files.append(plots.elastic_figure(curves["elastic"], ref_values, output_dir))
    if curves["phonons"]:
        files.append(plots.phonon_figure(curves["phonons"], output_dir))
    if curves["dimer"]:
        files.append(plots.dimer_figure(curves["dimer"], output_dir, shortest_data))
    if curves["nve"] or curves["nvt"]:
        files.append(plots.md_figure(curves["nve"], curves["nvt"], output_dir))
    if strain_dft is not None and curves["strains"]:
        files.append(plots.strain_figure(strain_dft, curves["strains"], output_dir))
    if data_info is not None:
        from ace.validation.data_plots import data_figures
        files += data_figures(dataset, data_info["results"], output_dir,
                              data_info["nn_distances"])
    return files


# ----------------------------------------------------------------------------- output

def write_json(report, path):
    from ace.potential import write_atomic
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    write_atomic(path, json.dumps(_finite(report), indent=1) + "\n")


def _finite(obj):
    """NaN and inf become null (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


PROPERTY_LABELS = {
    "lattice_constant": "lattice constant a", "lattice_constant_c": "lattice constant c",
    "atomic_volume": "V0 (EOS)", "bulk_modulus": "B0 (EOS)",
    "bulk_modulus_derivative": "B0' (EOS)", "C11_data_strains": "C11 on the data's strains",
    "C44_data_strains": "C44 on the data's strains",
    "vacancy_formation_energy": "vacancy formation energy (relaxed)",
    "surface_energy_100": "surface energy (100)", "surface_energy_110": "surface energy (110)",
    "surface_energy_111": "surface energy (111)", "surface_energy_0001": "surface energy (0001)",
    "min_phonon_frequency": "lowest phonon frequency", "max_phonon_frequency":
    "highest phonon frequency", "nve_drift": "NVE energy drift",
}


def _cell(prop):
    value = prop["value"]
    if value is None:
        return "–"
    text = _number(value, prop["unit"])
    error = prop["relative_error"]
    if error is not None:
        text += f" ({100 * error:+.2f}%)" if abs(error) < 0.01 else f" ({100 * error:+.1f}%)"
    return text


def _number(value, unit=None):
    if value is None:
        return "–"
    if unit == "Å":  # lattice constants: to 1e-4 Å
        return f"{value:.4f}"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-2):
        return f"{value:.2e}"
    return f"{value:.4g}" if abs(value) < 10 else f"{value:.1f}"


def write_markdown(report, path):
    from ace.potential import write_atomic
    names = list(report["potentials"])
    settings = report["settings"]
    lines = [f"# Validation report: {', '.join(names)}", ""]
    lines.append(f"Crystal: {settings['structure']} {settings['element']}. "
                 f"Reference: {settings['reference'] or 'none given'}"
                 + (f"; data: {_listing(settings['data'])}" if settings["data"] else "") + ". "
                 + ("Quick mode (data, EOS, elastic constants). " if settings["quick"] else "")
                 + f"Total time {settings.get('seconds', 0):.0f} s"
                 + (f" ({settings['num_threads']} threads)." if settings["num_threads"] else "."))
    lines.append("")
    lines.append("Values with the relative error against the reference in brackets.")
    lines.append("")
    keys = []
    for entry in report["potentials"].values():
        keys += [k for k in entry["properties"] if k not in keys]
    head = "| property | unit | reference | " + " | ".join(names) + " |"
    lines += [head, "|" + "---|" * (3 + len(names))]
    for key in keys:
        first = next(e["properties"][key] for e in report["potentials"].values()
                     if key in e["properties"])
        ref = report["references"].get(key)
        row = [PROPERTY_LABELS.get(key, key), first["unit"],
               _number(ref["value"], first["unit"]) if ref else "–"]
        row += [_cell(e["properties"][key]) if key in e["properties"] else "–"
                for e in report["potentials"].values()]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += _checks_section(report)
    if report["figures"]:
        lines += ["## Figures", ""]
        for figure in report["figures"]:
            lines += [f"![{figure}]({figure})", ""]
    lines += _data_section(report)
    lines += _method_section(report)
    sources = sorted({r["source"] for r in report["references"].values() if r.get("source")})
    if sources:
        lines += ["## Reference sources", ""] + [f"- {s}" for s in sources] + [""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    write_atomic(path, "\n".join(lines))


def _listing(value):
    return ", ".join(value) if isinstance(value, list) else str(value)


def _checks_section(report):
    lines = ["## Checks", "", "| check | " + " | ".join(report["potentials"]) + " |",
             "|" + "---|" * (1 + len(report["potentials"]))]
    rows = {}
    for entry in report["potentials"].values():
        for key, value in entry["checks"].items():
            rows.setdefault(key, None)
    for key in rows:
        cells = []
        for entry in report["potentials"].values():
            value = entry["checks"].get(key)
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in value.items())
            elif isinstance(value, bool):
                value = "yes" if value else "NO"
            elif isinstance(value, float):
                value = f"{100 * value:.2f}%"
            cells.append("–" if value is None else str(value))
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines += ["", "elastic step convergence: the largest change of C11, C12, C44 between strain "
              "steps 0.25%, 0.5% and 1% relative to C11 (converged below 2%). Imaginary phonon "
              "modes (phonons real: no): a frequency below −0.1 THz on the path.", ""]
    return lines


def _data_section(report):
    tables = {n: e["data_errors"] for n, e in report["potentials"].items() if e["data_errors"]}
    if not tables:
        return []
    lines = ["## Errors on the data", "",
             "RMSE / MAE: energy meV/atom, forces eV/Å (all components)"
             + (", stress GPa" if any(t["overall"].get("stress_rmse") is not None
                                      for t in tables.values()) else "") + ".", ""]
    for name, table in tables.items():
        lines += [f"**{name}**", "", "| config_type | structures | atoms | energy | forces |"
                  + (" stress |" if table["overall"].get("stress_rmse") is not None else ""),
                  "|---|---|---|---|---|"
                  + ("---|" if table["overall"].get("stress_rmse") is not None else "")]
        rows = list(table["by_config_type"].items()) + [("overall", table["overall"])]
        for ctype, row in rows:
            cells = [ctype, str(row["n_structures"]), str(row["n_atoms"])]
            for key in ("energy", "forces") + (("stress",) if table["overall"].get(
                    "stress_rmse") is not None else ()):
                rmse, mae = row.get(f"{key}_rmse"), row.get(f"{key}_mae")
                cells.append("–" if rmse is None else f"{_number(rmse)} / {_number(mae)}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _method_section(report):
    details = next(iter(report["potentials"].values()))["details"]
    lines = ["## How the numbers were computed", ""]
    lines.append("- Cell and internal coordinates relaxed with ASE's FrechetCellFilter and BFGS "
                 f"(forces below {props.FMAX} eV/Å).")
    if "eos" in details:
        eos = details["eos"]
        span = 100 * eos["relative_volume_range"]
        lines.append(f"- EOS: {len(eos['volumes'])} volumes within ±{span:.0f}% of V0, shape "
                     "and ions relaxed at fixed volume, Birch–Murnaghan fit (ase.eos).")
    if "elastic" in details:
        lines.append("- Elastic constants: central differences of the stress under ±0.5% "
                     "strains (engineering shear), ions relaxed at each strain; convergence "
                     "checked against 0.25% and 1%.")
    if "vacancy" in details:
        v = details["vacancy"]
        repeat = "×".join(map(str, v["supercell"]))
        lines.append(f"- Vacancy: {v['n_atoms']}-atom supercell ({repeat} conventional cells), "
                     "ions relaxed at the bulk cell, E_f = E(N−1) − (N−1)/N E(N).")
    surfaces = [d for k, d in details.items() if k.startswith("surface_")]
    if surfaces:
        sizes = ", ".join(f"({''.join(map(str, s['miller']))}) {s['n_atoms']} atoms"
                          for s in surfaces)
        lines.append("- Surfaces: slabs cut by ase.build.surface from the conventional cell, "
                     "at least 12 Å thick, cut at the atomic plane that gives the lowest "
                     f"unrelaxed energy ({sizes}), 8 Å vacuum each side, unreconstructed, ions "
                     "relaxed; γ = (E_slab − N e_bulk) / 2A.")
    if "phonons" in details:
        p = details["phonons"]
        lines.append(f"- Phonons: ase.phonons finite displacements (0.01 Å) in a "
                     f"{'×'.join(map(str, p['supercell']))} supercell of the primitive cell, "
                     f"acoustic sum rule imposed, path {p['path']}.")
    if "dimer" in details:
        lines.append("- Dimer: isolated pair from 0.5 Å to beyond the cutoff in 0.025 Å steps; "
                     "checked repulsive (above the separated atoms) and monotonic below "
                     f"{details['dimer']['check_below']:.2f} Å "
                     f"({details['dimer']['check_below_source']}).")
    if "nve" in details:
        n = details["nve"]
        lines.append(f"- NVE: {n['n_atoms']} atoms, {n['steps']} velocity-Verlet steps of "
                     f"{n['timestep_fs']} fs from {n['start_temperature']:.0f} K (≈"
                     f"{n['mean_temperature']:.0f} K after equipartition); drift = slope of a "
                     "linear fit of the total energy.")
    if "nvt" in details:
        runs = details["nvt"]
        lines.append(f"- NVT: Langevin (friction 0.02/fs), {runs[0]['n_atoms']} atoms, "
                     f"{runs[0]['steps']} steps of {runs[0]['timestep_fs']} fs at "
                     + " and ".join(f"{r['temperature']:.0f} K" for r in runs)
                     + "; unstable when two atoms come closer than "
                     f"{runs[0]['shortest_allowed']:.2f} Å (0.8 × the data's shortest distance), "
                     "the temperature exceeds 3× the target or the calculator fails.")
    lines.append("")
    return lines
