"""pacemaker's ``input.yaml`` read as an ace fit config.

:func:`translate` maps every key of pacemaker's input file that has an ace equivalent and
returns, for each key it leaves out, the reason; ``FitConfig.load`` calls it on a file that
looks like pacemaker's (:func:`is_pacemaker_config`), :func:`ace.fitting.template.convert_config`
(``ace convert-config``) writes the result as an ace config with the notes at its top.

The loss. pacemaker minimises (its pyace and tensorpotential backends alike)::

    (1 - kappa) sum_s w_s (dE_s / N_s)^2  +  kappa sum_(s,i) w_si |dF_si|^2  +  regularisation

with the energy weights normalised to sum 1 over structures and the force weights to sum 1
over atoms (uniform weighting: every structure, and every atom, alike). ace's loss
(:mod:`ace.fitting.linear`) is the mean square energy error per atom plus tau_F times the mean
square force *component* error; |dF|^2 has three components, so the two losses are
proportional when::

    tau_F = 3 kappa / (1 - kappa)          (kappa = tau_F / (3 + tau_F))

pacemaker's loss has no stress term: the translation sets ace's stress weight to 0.

Mapping (pacemaker key -> ace key)::

    cutoff                       -> cutoff, unless the bonds give rcut: then the largest rcut
                                    (pacemaker's neighbour-list cutoff; ace's is the bonds')
    seed                         -> regularisation.seed, and fit.seed of a nonlinear fit
    data.filename (str | list)   -> data.train (with data.datapath prepended to relative names)
    data.test_filename           -> data.test
    data.reference_energy        -> e0: {El: E_El - shift} for a mapping (pacemaker fits
                                    energy_corrected = E - sum_i E_El(i) + shift N, ace fits E
                                    with E0 fixed: the same model); a number c -> e0 c for
                                    every element; auto -> e0: auto (fitted)
    potential.elements           -> elements
    potential.bonds              -> basis.bonds (as given)
    potential.embeddings         -> basis.embeddings; one linear density everywhere
                                    (FinnisSinclairShiftedScaled, fs_parameters [1, 1]) ->
                                    fit.method linear, anything else -> fit.method nonlinear
    potential.functions          -> basis.functions; without number_of_functions_per_element
                                    -> number_of_functions_per_element: null (every function
                                    of the shape, as pacemaker; ace's own default sizes the
                                    basis from the data)
    potential.deltaSplineBins    -> basis.deltaSplineBins
    fit.loss.kappa               -> weights.forces = 3 kappa / (1 - kappa); absent -> 0
                                    (pacemaker's default, energies only); auto -> auto (ace
                                    chooses it by cross-validation, pacemaker from the ratio
                                    of the energy and force variances)
    (no stress term)             -> weights.stress: 0
    fit.repulsion: auto          -> core_repulsion: auto (ZBL below the shortest training
                                    distance); absent -> core_repulsion: none
    fit.optimizer                -> fit.optimizer (nonlinear): BFGS -> BFGS, L-BFGS-B -> L-BFGS
    fit.maxiter                  -> fit.max_iterations (nonlinear)
    fit.trainable_parameters     -> fit.trainable (nonlinear): ALL -> coefficients, radial,
                                    e0; func -> coefficients, e0; radial -> radial
    fit.fit_cycles               -> fit.restarts (nonlinear; ace restarts from a perturbed
                                    start and keeps the best on validation)
    fit.noise_relative_sigma     -> fit.restart_noise (nonlinear)
    backend                      -> ignored: ace evaluates with its own OpenMP core

Ignored, with the reason given at load time: loss.L1_coeffs and L2_coeffs (ace's ridge is
relative to the data, regularisation.l2, chosen by cross-validation), loss.w0_rad/w1_rad/
w2_rad/w_orth (a linear fit keeps the radial functions; the nonlinear fit has its own radial
prior, fit.radial_l2), weighting (ace weights are uniform unless weights.config_type,
weights.energy_kT or a data weight column say otherwise), optimizer options, ladder_step,
ladder_type, early stopping by loss change, callbacks, data.test_size (ace takes a separate
test file), metadata, and anything in a linear fit that only a nonlinear fit uses.
"""
from __future__ import annotations

import copy
import os

from ace.fitting.config_file import LINEAR_EMBEDDING, ConfigError, float_or_same

# keys pacemaker's input has and ace's config has not: any of them marks a pacemaker file
PACEMAKER_TOP_KEYS = {"potential", "backend"}
PACEMAKER_FIT_KEYS = {"loss", "weighting", "maxiter", "trainable_parameters", "fit_cycles",
                      "repulsion", "ladder_step", "ladder_type", "options"}
OPTIMIZERS = {"BFGS": "BFGS", "L-BFGS-B": "L-BFGS"}
TRAINABLE = {"ALL": ["coefficients", "radial", "e0"], "func": ["coefficients", "e0"],
             "radial": ["radial"]}
OUTPUT = "ace_potential.yaml"


def is_pacemaker_config(raw):
    """Whether the parsed YAML ``raw`` is pacemaker's input file rather than ace's config."""
    if not isinstance(raw, dict):
        return False
    if PACEMAKER_TOP_KEYS & set(raw):
        return True
    fit = raw.get("fit")
    return isinstance(fit, dict) and bool(PACEMAKER_FIT_KEYS & set(fit))


def translate(raw):
    """``(config, notes)``: the ace config dict equivalent to pacemaker's ``raw`` input and a
    list of ``(key, why it is ignored)``. ConfigError for what cannot be translated."""
    notes = []
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {raw!r}")
    for key in sorted(set(raw) - {"cutoff", "seed", "data", "potential", "fit", "backend"}):
        notes.append((key, "ace writes its own provenance into the potential" if key == "metadata"
                      else "not a key of pacemaker's input that ace knows"))
    if "backend" in raw:
        notes.append(("backend", "ace evaluates with its own OpenMP core (threads: "
                                 "fit.num_threads or --num-threads)"))
    potential = _potential(raw.get("potential"))
    elements = potential.get("elements", potential.get("element"))
    if isinstance(elements, str):
        elements = [elements]
    if not elements:
        raise ConfigError("potential.elements: required (ace does not take the elements from "
                          "the data)")
    basis, nonlinear = _basis(potential, notes)
    config = {"elements": sorted(elements), "cutoff": _cutoff(raw.get("cutoff"), basis, notes)}
    data, e0 = _data(raw.get("data"), elements, notes)
    config["data"] = data
    config["output"] = OUTPUT
    config["basis"] = basis
    fit = raw.get("fit") or {}
    if not isinstance(fit, dict):
        raise ConfigError(f"fit: expected a mapping, got {fit!r}")
    config["core_repulsion"] = "auto" if fit.get("repulsion") == "auto" else "none"
    config["e0"] = e0
    config["weights"] = {"forces": _force_weight(fit.get("loss") or {}, notes), "stress": 0.0}
    regularisation = {}
    if "seed" in raw:
        regularisation["seed"] = int(raw["seed"])
    if regularisation:
        config["regularisation"] = regularisation
    config["fit"] = _fit(fit, nonlinear, raw.get("seed"), notes)
    if nonlinear and e0 != "auto":
        # pacemaker's reference energies are fixed: not a parameter of its fit
        trainable = config["fit"].get("trainable", TRAINABLE["ALL"])
        config["fit"]["trainable"] = [k for k in trainable if k != "e0"] or ["coefficients"]
    return config, notes


def _potential(potential):
    if isinstance(potential, str) or (isinstance(potential, dict) and "filename" in potential):
        raise ConfigError("potential: a potential file (pacemaker's upfit) is not supported; "
                          "ace fits from the basis shape: give potential: {elements, bonds, "
                          "embeddings, functions}")
    if not isinstance(potential, dict):
        raise ConfigError(f"potential: expected a mapping with elements, bonds, embeddings "
                          f"and functions, got {potential!r}")
    return potential


def _basis(potential, notes):
    basis = {}
    for key in ("bonds", "embeddings", "functions", "deltaSplineBins"):
        if key in potential:
            basis[key] = copy.deepcopy(potential[key])
    for key in sorted(set(potential) - {"elements", "element", "bonds", "embeddings",
                                        "functions", "deltaSplineBins"}):
        notes.append((f"potential.{key}", "ace starts every fit from the basis shape, not "
                                          "from a potential file"))
    functions = basis.setdefault("functions", {})
    if not isinstance(functions, dict):
        raise ConfigError(f"potential.functions: expected a mapping, got {functions!r}")
    # pacemaker keeps every function of the shape unless told a number
    functions.setdefault("number_of_functions_per_element", None)
    embeddings = basis.get("embeddings") or {}
    if not isinstance(embeddings, dict):
        raise ConfigError(f"potential.embeddings: expected a mapping, got {embeddings!r}")
    linear = all(_is_linear(e) for e in embeddings.values())
    return basis, not linear


def _is_linear(embedding):
    if not isinstance(embedding, dict):
        return False
    return (embedding.get("npot") == LINEAR_EMBEDDING["npot"]
            and int(embedding.get("ndensity", 1)) == 1
            and [float(float_or_same(v)) for v in embedding.get("fs_parameters", [])]
            == [1.0, 1.0])


def _cutoff(cutoff, basis, notes):
    rcuts = [float(float_or_same(b["rcut"])) for b in (basis.get("bonds") or {}).values()
             if isinstance(b, dict) and "rcut" in b]
    if rcuts:
        if cutoff is not None and float(float_or_same(cutoff)) != max(rcuts):
            notes.append(("cutoff", f"pacemaker's neighbour-list cutoff; ace's cutoff is the "
                                    f"largest bond rcut, {max(rcuts):g} Å"))
        return max(rcuts)
    if cutoff is None:
        raise ConfigError("cutoff: give a top-level cutoff or potential.bonds rcut")
    return float(float_or_same(cutoff))


def _data(data, elements, notes):
    if isinstance(data, str):
        data = {"filename": data}
    if not isinstance(data, dict) or "filename" not in data:
        raise ConfigError(f"data.filename: required (pacemaker's dataset file(s)), got "
                          f"data: {data!r}")
    datapath = data.get("datapath")

    def located(names):
        names = [names] if isinstance(names, str) else list(names)
        if datapath:
            names = [n if os.path.isabs(n) else os.path.join(datapath, n) for n in names]
        return names[0] if len(names) == 1 else names

    out = {"train": located(data["filename"])}
    if "test_filename" in data:
        out["test"] = located(data["test_filename"])
    for key in sorted(set(data) - {"filename", "test_filename", "datapath", "reference_energy"}):
        why = {"test_size": "ace takes a separate test set (data.test); split the file once "
                            "(ace convert-data writes extended XYZ that ASE can slice)"}.get(
            key, "pacemaker's dataset option, no ace equivalent")
        notes.append((f"data.{key}", why))
    return out, _e0(data.get("reference_energy", "auto"), elements, notes)


def _e0(reference, elements, notes):
    if reference == "auto":
        return "auto"
    if isinstance(reference, dict):
        shift = float(float_or_same(reference.get("shift", 0.0)))
        return {el: float(float_or_same(reference.get(el, 0.0))) - shift for el in elements}
    value = float_or_same(reference)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {el: float(value) for el in elements}
    notes.append(("data.reference_energy", f"{reference!r}: ace has no table of free-atom "
                                           "energies; E0 is fitted (e0: auto)"))
    return "auto"


def _force_weight(loss, notes):
    if not isinstance(loss, dict):
        raise ConfigError(f"fit.loss: expected a mapping, got {loss!r}")
    for key in sorted(set(loss) - {"kappa"}):
        value = float_or_same(loss[key])
        if key in ("L1_coeffs", "L2_coeffs"):
            why = ("ace's ridge is relative to the data (regularisation.l2), chosen by "
                   "cross-validation; pacemaker's absolute penalty on the coefficients has no "
                   "direct equivalent")
        elif key in ("w0_rad", "w1_rad", "w2_rad", "w_orth"):
            if value == 0:
                continue
            why = ("radial smoothness: a linear fit keeps the radial functions fixed; the "
                   "nonlinear fit has its own radial prior (fit.radial_l2)")
        else:
            why = "no ace equivalent in the loss"
        notes.append((f"fit.loss.{key}", why))
    kappa = float_or_same(loss.get("kappa", 0.0))
    if kappa == "auto":
        return "auto"
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0 <= kappa < 1:
        raise ConfigError(f"fit.loss.kappa: expected auto or a number in [0, 1) (1, forces "
                          f"only, has no ace equivalent: the energies always count), got "
                          f"{kappa!r}")
    return 3.0 * kappa / (1.0 - kappa)


def _fit(fit, nonlinear, seed, notes):
    out = {"method": "nonlinear" if nonlinear else "linear"}
    mapped = {"loss", "repulsion"}
    if nonlinear:
        if seed is not None:
            out["seed"] = int(seed)
        if "optimizer" in fit:
            mapped.add("optimizer")
            if fit["optimizer"] in OPTIMIZERS:
                out["optimizer"] = OPTIMIZERS[fit["optimizer"]]
            else:
                notes.append(("fit.optimizer", f"{fit['optimizer']!r}: ace's optimisers are "
                                               "varpro, L-BFGS, BFGS and least_squares "
                                               "(optimizer: auto picks one)"))
        if "maxiter" in fit:
            mapped.add("maxiter")
            out["max_iterations"] = int(float_or_same(fit["maxiter"]))
        if "trainable_parameters" in fit:
            mapped.add("trainable_parameters")
            trainable = _trainable(fit["trainable_parameters"])
            if trainable is None:
                notes.append(("fit.trainable_parameters", f"{fit['trainable_parameters']!r}: "
                              "ace trains parameter kinds (coefficients, radial, e0) for all "
                              "elements alike"))
            else:
                out["trainable"] = trainable
        if "fit_cycles" in fit:
            mapped.add("fit_cycles")
            out["restarts"] = max(1, int(float_or_same(fit["fit_cycles"])))
        if "noise_relative_sigma" in fit:
            mapped.add("noise_relative_sigma")
            out["restart_noise"] = float(float_or_same(fit["noise_relative_sigma"]))
    for key in sorted(set(fit) - mapped):
        if key == "weighting":
            kind = fit[key].get("type") if isinstance(fit[key], dict) else fit[key]
            if kind == "UniformWeightingPolicy":
                continue
            why = (f"{kind}: ace weights structures uniformly unless weights.config_type, "
                   "weights.energy_kT (exp(-dE/kT)) or a data weight column say otherwise")
        elif key in ("optimizer", "maxiter", "trainable_parameters", "fit_cycles",
                     "noise_relative_sigma", "options"):
            why = ("the linear fit is solved exactly: no optimiser" if not nonlinear
                   else "scipy options: ace's optimisers take their own settings")
        elif key in ("ladder_step", "ladder_type"):
            why = "ace's ladder (fit.ladder) takes the numbers of functions to grow through"
        elif key in ("early_stopping_patience", "min_relative_train_loss_per_iter",
                     "min_relative_test_loss_per_iter"):
            why = "ace stops on a validation plateau (fit.patience segments)"
        else:
            why = "no ace equivalent"
        notes.append((f"fit.{key}", why))
    return out


def _trainable(value):
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v in TRAINABLE
                                              for v in items):
        return None
    kinds = []
    for item in items:
        kinds += [k for k in TRAINABLE[item] if k not in kinds]
    return kinds

