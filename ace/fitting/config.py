"""The fit configuration (YAML) of ``ace fit``: keys, defaults, validation.

pacemaker's ``input.yaml`` is read too: :mod:`ace.fitting.pacemaker` translates it and names
each key it ignores, and ``ace convert-config`` writes the translation out. Numbers may be
written in any spelling Python's ``float`` takes (``1e-6`` included, which PyYAML alone reads
as a string); a misspelt key gets a "did you mean". ``ace init`` writes every key below, with
its default, into a commented config.

A config needs only four keys; everything else has a default chosen from principles::

    elements: [Mo]
    cutoff: 5.0                       # Å: the radial basis is scaled to it
    data: {train: train.xyz, test: test.xyz}
    output: Mo.yaml                   # the potential; metrics go to Mo.metrics.json

A traditional potential (docs/physical.md) instead of ACE: a ``model`` section::

    model:
      kind: traditional               # ace (the default: everything below), traditional
      form: bop                       # bop or eam
      cutoff_width: 1.0               # Å, the d of the cutoff function (r_c is ``cutoff``)
      parameters: {A: 8.0, ...}       # start values (documented defaults for the rest)
      bounds: {a: [0, 5], ...}        # [lower, upper] (documented defaults for the rest)
      restarts: 4                     # L-BFGS runs from seeded starts; lowest training loss wins
      max_iterations: 150             # per run
      seed: 0                         # of the restart starts

Every key (relative paths are relative to the config file)::

    elements: [A, B, ...]             # required
    cutoff: 5.0                       # required, Å
    output: potential.yaml            # required
    data:
      train: file | glob | [files]    # required; any ASE-readable file, "file@:100" slices,
                                      #   or pacemaker's pandas pickles (*.pckl.gzip)
      test: file | glob | [files]     # optional
      trust_pickle: false             # read pickles (they can run code when loaded): only
                                      #   for files you made or trust (or --trust-pickle)
      stream: null                    # true: read the data in chunks, never all at once
                                      #   (ace.stream; memory: one chunk + the basis); null:
                                      #   false, or true with fit.engine dask. Not for
                                      #   pickles or fit.method nonlinear (yet)
      chunk_structures: 256           # structures per chunk (stream, engine dask)
      keys:                           # where the labels are (default: stored calculator
        energy: null                  #   results, then info["energy"], arrays["forces"],
        forces: null                  #   info["stress"])
        stress: null
        virial: null                  # info key of a virial (eV) to use as -V * stress
        config_type: config_type      # info key grouping structures for weights and errors
        weight: null                  # info key of a per-structure weight
    basis:                            # pacemaker's potential-dict sections (BasisSpec.from_dict)
      bonds: {ALL: {radbase: SBessel, radparameters: [5.25], rcut: <cutoff>, dcut: 0.01}}
      functions:
        number_of_functions_per_element: auto   # or an integer; auto: data size / 12, 16..2000
        ALL: {nradmax_by_orders: [16, 8, 6, 4, 3], lmax_by_orders: [0, 6, 4, 3, 2]}
      embeddings: {ALL: {npot: FinnisSinclairShiftedScaled, ndensity: 1, fs_parameters: [1, 1]}}
    core_repulsion: auto              # auto: ZBL below the shortest training distance
                                      # (structures with atoms closer than half their
                                      # covalent radii's sum are reported and left out, and
                                      # r_in stays above that floor); none; or
                                      # {r_in: Å, delta_in: Å} with r_in < cutoff
    e0: auto                          # auto: fitted (a free constant: cohesive energies
                                      #   then mean nothing); {A: eV, ...} free-atom
                                      #   energies; isolated: from single-atom structures
                                      #   in the data; {isolated: config_type}
    weights:
      forces: auto                    # tau_F (ace.fitting.linear), or a number
      stress: auto                    # tau_S, or a number
      config_type: {}                 # {config_type: multiplier}
      energy_kT: null                 # eV/atom: energy-based weights exp(-dE/kT)
      energy_min_weight: 0.01
    regularisation:
      l2: auto                        # relative ridge strength, or a number
      method: cv                      # how "auto" weights and l2 are chosen: cv (k-fold
                                      # cross-validation), validation (one split), gcv
      folds: 5                        # for cv
      validation_fraction: 0.1        # for validation
      seed: 0                         # of the random folds / split
      smoothness: 2                   # smoothness prior: the ridge penalty of a function grows
                                      #   as (1 + its n + l)^smoothness; null: the scale-free
                                      #   ridge (columns standardised by the data)
    fit:
      num_threads: null               # OpenMP threads (null: OMP_NUM_THREADS)
      chunk_rows: 4096                # rows per normal-equation update (memory vs speed)
      committee: 32                   # linear fits: committee members sampled from the
                                      #   Bayesian posterior of the coefficients (0: none)
      active_set: normalised          # write <output>.active.yaml (extrapolation grade γ):
                                      #   normalised (B / |B|: the best detector, docs/trust.md),
                                      #   linear (PACE-compatible .asi), full, or none
      progress: true                  # tqdm bars when tqdm is installed, else a plain line
                                      #   on stderr every 10 s
      engine: inprocess               # or dask: the design rows and error tables chunk by
                                      #   chunk on Dask workers (ace.fitting.distributed;
                                      #   pip install "ace[dask]"); the data are streamed
      scheduler: null                 # dask: null starts a LocalCluster on this machine, or
                                      #   "tcp://host:port" of a running scheduler (its
                                      #   workers must see the data files at the same paths)
      workers: null                   # dask LocalCluster: worker processes (null: Dask's
                                      #   choice for this machine); not with a scheduler
      threads_per_worker: 1           # dask: threads per worker = the core's OpenMP threads
      method: linear                  # or nonlinear (ace.fitting.nonlinear): starts from the
                                      # linear fit, then fits all densities of the embedding
                                      # (default FinnisSinclairShiftedScaled, 2 densities,
                                      # fs_parameters [1, 1, 1, 0.5]) and the radial functions
      # with method nonlinear only (defaults shown):
      optimizer: auto                 # varpro (variable projection: the first density's
                                      # coefficients and E0 solved exactly at every step)
                                      # where it applies, else L-BFGS; BFGS; least_squares
                                      # (Levenberg-Marquardt, small fits)
      trainable: [coefficients, radial, e0]
      max_iterations: 300
      checkpoint_every: 25            # iterations per segment; <output>.checkpoint.json
      patience: 4                     # segments without validation gain before stopping
      restarts: 1                     # perturbed restarts, best validation loss kept
      restart_noise: 0.05
      batch_size: null                # structures per mini-batch (null: all)
      ladder: null                    # e.g. [50, 150]: grow the basis in steps by degree
      radial_l2: 1.0e-6               # prior keeping R_nl near the start, rough parts most
      validation_fraction: 0.1        # held out of train for early stopping
      seed: 0

The defaults and why:

* Radial basis ``SBessel`` (simplified spherical Bessel functions, Kocer et al. 2020) with
  rcut = cutoff: it has no shape parameter, so it scales with the cutoff by construction.
* Basis size from the data: about one function per 12 observations (energies + force
  components + stress components), between 16 and 2000 per element, taken from a pool of
  correlation orders up to 5 in pacemaker's "power order" (low radial and angular degree first).
* Force/stress weights and ridge strength: chosen by 5-fold cross-validation on the training
  data (``ace.fitting.linear.select_hyperparameters``): every candidate costs one small solve per
  fold, as each fold keeps its own normal equations.
* ZBL core repulsion (a universal screened Coulomb repulsion) blended in below the shortest
  interatomic distance of the training data, so atoms pushed closer than anything seen repel,
  while the data region is untouched.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from ase.data import atomic_numbers, covalent_radii

from ace.basis import BasisSpec
from ace.data import DataKeys, check_pickle_trust, shortest_pairs
from ace.fitting import pacemaker
from ace.fitting.config_file import (LINEAR_EMBEDDING, ConfigError, did_you_mean,
                                     float_or_same, load_yaml)
from ace.fitting.distributed import EngineSettings
from ace.fitting.linear import DEFAULT_CHUNK_ROWS, LossSettings, check_e0_elements
from ace.fitting.nonlinear import NonlinearSettings
from ace.fitting.physically_informed import SETTINGS_KEYS as PINN_KEYS
from ace.fitting.physically_informed import PhysicallyInformedSettings
from ace.fitting.traditional import SETTINGS_KEYS as TRADITIONAL_KEYS
from ace.fitting.traditional import TraditionalSettings
from ace.limits import (BOND_INTEGER_LIMITS, MAX_ABS_PARAMETER, MAX_LMAX, MAX_NRADMAX,
                        LimitError, check_cutoff, check_integer)
from ace.limits import MAX_FUNCTIONS as MAX_FUNCTIONS_LIMIT
from ace.stream import DEFAULT_CHUNK_STRUCTURES

DEFAULT_RADIAL = {"radbase": "SBessel", "radparameters": [5.25], "dcut": 0.01}
DEFAULT_FUNCTIONS = {"nradmax_by_orders": [16, 8, 6, 4, 3], "lmax_by_orders": [0, 6, 4, 3, 2]}
OBSERVATIONS_PER_FUNCTION = 12
MIN_FUNCTIONS, MAX_FUNCTIONS = 16, 2000
ZBL_MARGIN = 0.1  # Å below the shortest training distance where the ZBL blend ends
ZBL_WIDTH = 0.5  # Å: width of the blend
# Shortest plausible distance of two atoms, as a fraction of the sum of their covalent radii
# (Si-Si: 1.11 Å): closer pairs are broken data, and the automatic ZBL r_in stays above it.
COVALENT_FLOOR_FRACTION = 0.5

TOP_KEYS = {"elements", "cutoff", "data", "output", "basis", "core_repulsion", "e0", "weights",
            "regularisation", "fit", "model"}
MODEL_KINDS = ("ace", "traditional", "physically-informed")
# keys of an ACE fit that a traditional one has no use for
ACE_ONLY_KEYS = ("basis", "core_repulsion")
ACE_ONLY_FIT_KEYS = ("method", "committee", "active_set", "chunk_rows", "engine", "scheduler",
                     "workers", "threads_per_worker")
DATA_KEYS = {"train", "test", "keys", "trust_pickle", "stream", "chunk_structures"}
BASIS_KEYS = {"bonds", "functions", "embeddings", "deltaSplineBins"}
WEIGHT_KEYS = {"forces", "stress", "config_type", "energy_kT", "energy_min_weight"}
REGULARISATION_KEYS = {"l2", "method", "folds", "validation_fraction", "seed", "smoothness"}
FIT_KEYS = {"num_threads", "chunk_rows", "progress", "method", "committee", "active_set",
            "engine", "scheduler", "workers", "threads_per_worker"}
ENGINE_KEYS = ("engine", "scheduler", "workers", "threads_per_worker")
ACTIVE_SET_MODES = ("normalised", "linear", "full", "none")
# the nonlinear fit's keys (ace.fitting.nonlinear.NonlinearSettings), allowed with method nonlinear
NONLINEAR_KEYS = {"optimizer", "trainable", "max_iterations", "checkpoint_every", "patience",
                  "restarts", "restart_noise", "batch_size", "ladder", "radial_l2",
                  "validation_fraction", "seed", "gtol"}
# the nonlinear fit's default embedding (pacemaker's): a linear density plus a square-root one
NONLINEAR_EMBEDDING = {"npot": "FinnisSinclairShiftedScaled", "ndensity": 2,
                       "fs_parameters": [1, 1, 1, 0.5]}


def _check_keys(section, allowed, where):
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping, got {section!r}")
    unknown = sorted(set(section) - allowed, key=str)
    if unknown:
        hints = "".join(f"; '{k}'{did_you_mean(k, allowed)}" for k in unknown
                        if did_you_mean(k, allowed))
        raise ConfigError(f"{where}: unknown key(s) {unknown}{hints} "
                          f"(allowed: {sorted(allowed)})")
    return section


def _paths(value, where, base_dir, required):
    if value is None:
        if required:
            raise ConfigError(f"{where}: required (a file, glob pattern or list of them)")
        return []
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, list) or not all(isinstance(v, (str, os.PathLike)) for v in items):
        raise ConfigError(f"{where}: expected a file name or a list of file names, got {value!r}")
    return [_resolve(os.fspath(v), base_dir) for v in items]


def _resolve(path, base_dir):
    path = os.path.expanduser(path)
    if os.path.isabs(path) or base_dir is None:
        return path
    return os.path.normpath(os.path.join(base_dir, path))


@dataclass
class FitConfig:
    """A validated fit configuration (see the module docstring for every key)."""

    elements: list
    cutoff: float
    train: list
    output: str
    test: list = field(default_factory=list)
    keys: DataKeys = field(default_factory=DataKeys)
    trust_pickle: bool = False  # read pandas pickles (pacemaker datasets): they can run code
    basis: dict = field(default_factory=dict)
    core_repulsion: object = "auto"
    loss: LossSettings = field(default_factory=LossSettings)
    num_threads: int | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    progress: bool = True
    committee: int = 32  # members of the Bayesian committee of a linear fit (0: none)
    active_set: str = "normalised"  # mode of the active set written beside the potential, or none
    nonlinear: object = None  # NonlinearSettings with fit.method nonlinear, else None
    stream: bool = False  # read the data in chunks (ace.stream)
    chunk_structures: int = DEFAULT_CHUNK_STRUCTURES
    engine: EngineSettings = field(default_factory=EngineSettings)  # where the chunks run
    model: object = None  # Traditional/PhysicallyInformedSettings (model.kind); None: ACE
    source: dict = field(default_factory=dict)  # the config as given
    base_dir: str | None = None  # relative paths in the config are relative to this
    path: str | None = None  # the YAML file the config was read from (None: a dict)

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path, log=None, trust_pickle=False):
        """Read a config file: ace's, or pacemaker's ``input.yaml`` (translated by
        :mod:`ace.fitting.pacemaker`, each key it ignores reported through ``log``, by
        default on stderr). ``trust_pickle``: read pickled datasets even if the config does
        not say ``data: {trust_pickle: true}`` (``ace fit --trust-pickle``)."""
        path = os.fspath(path)
        raw = load_yaml(path)
        try:
            if pacemaker.is_pacemaker_config(raw):
                raw, notes = pacemaker.translate(raw)
                log = log or (lambda message: print(message, file=sys.stderr, flush=True))
                log(f"{path}: a pacemaker input file, read as the ace config that "
                    f"`ace convert-config {os.path.basename(path)} -o ace.yaml` writes")
                for key, why in notes:
                    log(f"  ignored {key}: {why}")
            config = cls.from_dict(raw, base_dir=os.path.dirname(os.path.abspath(path)),
                                   trust_pickle=trust_pickle)
            config.path = os.path.abspath(path)
            return config
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, raw, base_dir=None, trust_pickle=False):
        raw = _check_keys(raw, TOP_KEYS, "config")
        for key in ("elements", "cutoff", "data", "output"):
            if key not in raw:
                raise ConfigError(f"missing required key '{key}'")
        elements = raw["elements"]
        if isinstance(elements, str):
            elements = [elements]
        if not (isinstance(elements, list) and elements
                and all(isinstance(e, str) for e in elements)):
            raise ConfigError(f"elements: expected a list of chemical symbols, got {elements!r}")
        cutoff = raw["cutoff"]
        if isinstance(cutoff, str):  # a number PyYAML left as a string, given to from_dict
            cutoff = float_or_same(cutoff)
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not cutoff > 0:
            raise ConfigError(f"cutoff: expected a positive number (Å), got {cutoff!r}")
        check_cutoff(cutoff, "cutoff", error=ConfigError)
        data = _check_keys(raw["data"], DATA_KEYS, "data")
        _check_keys(data.get("keys"), set(DataKeys.__dataclass_fields__), "data.keys")
        try:
            keys = DataKeys.from_dict(data.get("keys"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.keys: {exc}") from exc
        output = raw["output"]
        if not isinstance(output, str) or not output:
            raise ConfigError(f"output: expected a file name, got {output!r}")
        basis = copy.deepcopy(_check_keys(raw.get("basis"), BASIS_KEYS, "basis"))
        weights = _check_keys(raw.get("weights"), WEIGHT_KEYS, "weights")
        regularisation = _check_keys(raw.get("regularisation"), REGULARISATION_KEYS,
                                     "regularisation")
        fit = raw.get("fit") or {}
        method = fit.get("method", "linear") if isinstance(fit, dict) else None
        if method not in ("linear", "nonlinear"):
            raise ConfigError(f"fit.method: expected 'linear' or 'nonlinear', got {method!r}")
        fit = _check_keys(fit, FIT_KEYS | (NONLINEAR_KEYS if method == "nonlinear" else set()),
                          "fit")
        fit = {k: float_or_same(v) for k, v in fit.items()}
        nonlinear = None
        if method == "nonlinear":
            try:
                nonlinear = NonlinearSettings(**{k: v for k, v in fit.items()
                                                 if k in NONLINEAR_KEYS})
            except (TypeError, ValueError) as exc:
                raise ConfigError(str(exc)) from exc
        weights = {k: float_or_same(v) for k, v in weights.items()}
        regularisation = {k: float_or_same(v) for k, v in regularisation.items()}
        e0 = raw.get("e0", "auto")
        if isinstance(e0, dict) and "isolated" not in e0:
            e0 = {k: float_or_same(v) for k, v in e0.items()}
        if isinstance(e0, dict) and "isolated" not in e0:
            bad = {k: v for k, v in e0.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float))
                   or not np.isfinite(v) or abs(v) > MAX_ABS_PARAMETER}
            if bad:
                raise ConfigError(f"e0: the values must be finite numbers (eV), got {bad}")
        try:
            loss = LossSettings(e0=e0, **weights, **regularisation)
        except (TypeError, ValueError) as exc:
            where = "" if str(exc).startswith("e0:") else "weights/regularisation: "
            raise ConfigError(f"{where}{exc}") from exc
        if isinstance(e0, dict) and "isolated" not in e0:
            try:
                check_e0_elements(e0, elements)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if nonlinear is not None and e0 != "auto" and "e0" in nonlinear.trainable:
            if "trainable" in fit:
                raise ConfigError("fit.trainable: e0 is given (e0: ...), so it cannot also be "
                                  "trained; remove e0 from fit.trainable or set e0: auto")
            # reference energies that mean something stay what they are
            nonlinear = dataclasses.replace(
                nonlinear, trainable=tuple(t for t in nonlinear.trainable if t != "e0"))
        engine, stream, chunk_structures = _engine_and_stream(fit, data, nonlinear)
        model = _model(raw, float(cutoff), elements)
        config = cls(
            elements=sorted(elements), cutoff=float(cutoff), model=model,
            train=_paths(data.get("train"), "data.train", base_dir, True),
            test=_paths(data.get("test"), "data.test", base_dir, False),
            output=_resolve(output, base_dir), keys=keys,
            trust_pickle=_flag(data.get("trust_pickle", False), "data.trust_pickle")
            or trust_pickle, basis=basis,
            core_repulsion=_core_repulsion(raw.get("core_repulsion", "auto")), loss=loss,
            num_threads=_optional_int(fit.get("num_threads"), "fit.num_threads"),
            chunk_rows=_optional_int(fit.get("chunk_rows", DEFAULT_CHUNK_ROWS), "fit.chunk_rows"),
            progress=bool(fit.get("progress", True)), nonlinear=nonlinear,
            committee=_committee_size(fit.get("committee", 32)),
            active_set=_active_set_mode(fit.get("active_set", "normalised")),
            stream=stream, chunk_structures=chunk_structures, engine=engine,
            source=copy.deepcopy(raw), base_dir=base_dir)
        if model is None:
            config.check_basis()
            config.check_core_repulsion()
        if not config.trust_pickle:
            try:
                for path in config.train + config.test:
                    check_pickle_trust(path, False)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        return config

    def with_scheduler(self, address):
        """This config on the Dask scheduler at ``address`` (``ace fit --scheduler``): engine
        dask, data streamed."""
        try:
            engine = EngineSettings("dask", address, None, self.engine.threads_per_worker)
        except ValueError as exc:
            raise ConfigError(f"--scheduler: {exc}") from None
        if self.nonlinear is not None:
            raise ConfigError("--scheduler: fit.method nonlinear does not run on Dask yet")
        return dataclasses.replace(self, engine=engine, stream=True)

    # ------------------------------------------------------------------ derived settings
    @property
    def metrics_path(self):
        root, _ = os.path.splitext(self.output)
        return root + ".metrics.json"

    def check_core_repulsion(self):
        """A given ZBL inner cutoff must lie inside the cutoff (beyond it, ZBL replaces the
        whole fitted potential)."""
        core = self.core_repulsion
        if isinstance(core, dict) and core["r_in"] >= self.cutoff:
            raise ConfigError(f"core_repulsion: r_in = {core['r_in']:g} Å is not inside the "
                              f"cutoff {self.cutoff:g} Å: the ZBL core would replace the fitted "
                              "potential everywhere")

    def check_basis(self):
        """Validate the basis section now (with a placeholder size), for early errors."""
        _check_basis_limits(self.basis)
        try:
            spec = BasisSpec.from_dict(self.basis_dict(n_functions=MIN_FUNCTIONS))
        except ValueError as exc:
            raise ConfigError(f"basis: {exc}") from exc
        if self.basis.get("embeddings") and self.nonlinear is None:
            for element in spec.elements:
                emb = spec.embedding(element)
                if emb.ndensity != 1 or emb.npot != LINEAR_EMBEDDING["npot"] or \
                        list(emb.fs_parameters) != [1.0, 1.0]:
                    raise ConfigError(f"basis.embeddings: the linear fit needs {LINEAR_EMBEDDING}"
                                      f" for every element; {element} has {emb}")

    def wants_auto_size(self):
        functions = self.basis.get("functions") or {}
        return functions.get("number_of_functions_per_element", "auto") == "auto"

    def basis_dict(self, n_functions=None):
        """The pacemaker-format basis dict, defaults filled in; ``n_functions`` replaces an
        ``auto`` number_of_functions_per_element."""
        bonds = copy.deepcopy(self.basis.get("bonds") or {})
        bonds["ALL"] = {**DEFAULT_RADIAL, "rcut": self.cutoff, **bonds.get("ALL", {})}
        functions = copy.deepcopy(self.basis.get("functions") or {})
        cap = functions.pop("number_of_functions_per_element", "auto")
        if not any(k for k in functions):
            functions["ALL"] = dict(DEFAULT_FUNCTIONS)
        if cap == "auto":
            cap = n_functions
        if cap is not None:
            functions["number_of_functions_per_element"] = cap
        out = {"elements": list(self.elements),
               "embeddings": copy.deepcopy(self.basis.get("embeddings") or {
                   "ALL": LINEAR_EMBEDDING if self.nonlinear is None else NONLINEAR_EMBEDDING}),
               "bonds": bonds, "functions": functions}
        if "deltaSplineBins" in self.basis:
            out["deltaSplineBins"] = self.basis["deltaSplineBins"]
        return out

    def to_dict(self):
        """The resolved settings (for the potential's provenance). File names are relative to
        the config's directory, so a shipped potential does not record the fitting machine's
        directory layout."""
        def rel(path):
            # relative only below the config's directory: '../../..' chains say less than
            # the absolute path they replace
            if not self.base_dir or not os.path.isabs(path):
                return path
            inside = os.path.relpath(path, self.base_dir)
            return path if inside.startswith(os.pardir) else inside

        return {"elements": self.elements, "cutoff": self.cutoff,
                "train": [rel(p) for p in self.train], "test": [rel(p) for p in self.test],
                "output": rel(self.output), "keys": asdict(self.keys),
                "basis": self.basis, "core_repulsion": self.core_repulsion,
                "loss": asdict(self.loss), "num_threads": self.num_threads,
                "chunk_rows": self.chunk_rows, "committee": self.committee,
                "active_set": self.active_set,
                "nonlinear": asdict(self.nonlinear) if self.nonlinear else None,
                "stream": self.stream, "chunk_structures": self.chunk_structures,
                "engine": asdict(self.engine),
                # an ACE fit's settings stay as they were (checkpoints compare them)
                **({"model": self.model.to_dict()} if self.model is not None else {})}


def _model(raw, cutoff, elements):
    """The ``model:`` section: None for ``kind: ace`` (the default), TraditionalSettings for
    ``kind: traditional``, PhysicallyInformedSettings for ``kind: physically-informed``.
    ConfigError naming the key otherwise."""
    model = raw.get("model")
    if model is None:
        return None
    if not isinstance(model, dict):
        raise ConfigError(f"model: expected a mapping with a 'kind' ({', '.join(MODEL_KINDS)}), "
                          f"got {model!r}")
    kind = model.get("kind", "ace")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model.kind: expected one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    if kind == "ace":
        _check_keys(model, {"kind"}, "model")
        return None
    pinn = kind == "physically-informed"
    keys = PINN_KEYS if pinn else TRADITIONAL_KEYS
    model = {k: float_or_same(v) for k, v in _check_keys(model, keys, "model").items()}
    for key in ACE_ONLY_KEYS:
        if key in raw:
            hint = (" (its descriptor's basis goes in model.basis)"
                    if pinn and key == "basis" else "")
            raise ConfigError(f"{key}: applies to ACE fits only; this config fits a {kind} "
                              f"potential (model.kind: {kind}){hint}")
    fit = raw.get("fit") or {}
    for key in ACE_ONLY_FIT_KEYS:
        if isinstance(fit, dict) and key in fit:
            raise ConfigError(f"fit.{key}: applies to ACE fits only; this config fits a "
                              f"{kind} potential (model.kind: {kind})")
    data = raw.get("data") or {}
    if isinstance(data, dict) and data.get("stream"):
        raise ConfigError(f"data.stream: applies to ACE fits only; this config fits a "
                          f"{kind} potential (model.kind: {kind})")
    if len(elements) != 1:
        raise ConfigError(f"model: {kind} potentials take one element for now, got "
                          f"{elements}")
    if "form" not in model:
        raise ConfigError(f"model.form: a {kind} model needs its form (bop or eam)")
    if pinn and "traditional" not in model:
        raise ConfigError("model.traditional: a physically-informed model needs its "
                          "traditional potential (a path) or the settings of its fit")
    model_cutoff = model.pop("cutoff", cutoff)
    if model_cutoff != cutoff:
        raise ConfigError(f"model.cutoff: {model_cutoff!r} differs from the top-level cutoff "
                          f"{cutoff:g}; give one (the form's r_c is the top-level cutoff)")
    model.pop("kind")
    try:
        if pinn:
            return PhysicallyInformedSettings(cutoff=cutoff, **model)
        return TraditionalSettings(cutoff=cutoff, **model)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith("model") else f"model: {message}") from None


def _check_basis_limits(basis):
    """Sizes in the basis section within ace.limits, before any basis is built from them."""
    try:
        for name, bond in (basis.get("bonds") or {}).items():
            if not isinstance(bond, dict):
                continue
            for key, limit in BOND_INTEGER_LIMITS.items():
                if key in bond:
                    check_integer(bond[key], limit, f"basis.bonds.{name}.{key}")
            if "rcut" in bond:
                check_cutoff(bond["rcut"], f"basis.bonds.{name}.rcut")
        functions = basis.get("functions") or {}
        count = functions.get("number_of_functions_per_element", "auto")
        if count not in ("auto", None):  # None: no cap (pacemaker's translation)
            check_integer(count, MAX_FUNCTIONS_LIMIT, "basis.functions.number_of_functions_per_element",
                          minimum=1)
        for name, block in functions.items():
            if not isinstance(block, dict):
                continue
            for key, limit in (("nradmax_by_orders", MAX_NRADMAX), ("lmax_by_orders", MAX_LMAX)):
                values = block.get(key)
                if isinstance(values, list):
                    for k, value in enumerate(values):
                        check_integer(value, limit, f"basis.functions.{name}.{key}[{k}]")
    except LimitError as exc:
        raise ConfigError(str(exc)) from None


def _engine_and_stream(fit, data, nonlinear):
    """(EngineSettings, stream, chunk_structures) of the fit and data sections."""
    try:
        engine = EngineSettings(**{k: fit[k] for k in ENGINE_KEYS if k in fit})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    chunk_structures = data.get("chunk_structures", DEFAULT_CHUNK_STRUCTURES)
    if isinstance(chunk_structures, bool) or not isinstance(chunk_structures, int) \
            or chunk_structures < 1:
        raise ConfigError(f"data.chunk_structures: expected an integer >= 1, "
                          f"got {chunk_structures!r}")
    stream = data.get("stream")
    if stream is None:
        stream = engine.engine == "dask"
    stream = _flag(stream, "data.stream")
    if engine.engine == "dask" and not stream:
        raise ConfigError("data.stream: false, but fit.engine dask reads the data on the "
                          "workers, chunk by chunk; set data.stream: true or leave it out")
    if stream and nonlinear is not None:
        raise ConfigError("fit.method nonlinear does not run on streamed data or fit.engine "
                          "dask yet (its batches stay in the memory of one process); use "
                          "data.stream: false and fit.engine: inprocess")
    if stream and data.get("trust_pickle"):
        raise ConfigError("data.stream: pacemaker's pickles are read whole, not streamed; "
                          "convert them (ace convert-data) or set data.stream: false")
    return engine, stream, chunk_structures


def _flag(value, where):
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _committee_size(value):
    if isinstance(value, bool) or not isinstance(value, int) or not (value == 0 or value >= 2):
        raise ConfigError(f"fit.committee: expected 0 (none) or a number of members >= 2, "
                          f"got {value!r}")
    return value


def _active_set_mode(value):
    if value is None:
        return "none"
    if value not in ACTIVE_SET_MODES:
        raise ConfigError(f"fit.active_set: expected one of {list(ACTIVE_SET_MODES)}, "
                          f"got {value!r}")
    return value


def _optional_int(value, where):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value


def _core_repulsion(value):
    if isinstance(value, dict):
        value = {k: float_or_same(v) for k, v in value.items()}
    if value in ("auto", "none", None):
        return "none" if value is None else value
    if isinstance(value, dict):
        _check_keys(value, {"r_in", "delta_in"}, "core_repulsion")
        if set(value) != {"r_in", "delta_in"} or not all(
                isinstance(v, (int, float)) and v > 0 for v in value.values()):
            raise ConfigError(f"core_repulsion: expected r_in and delta_in > 0 (Å), got {value!r}")
        return {k: float(v) for k, v in value.items()}
    raise ConfigError(f"core_repulsion: expected 'auto', 'none' or {{r_in, delta_in}}, "
                      f"got {value!r}")


# ---------------------------------------------------------------------- data-driven defaults

def observations(dataset):
    """Number of fitted values: energies, force components and stress components."""
    forces = int(dataset.n_atoms[dataset.has_forces].sum())
    return int(len(dataset) + 3 * forces + 6 * int(dataset.has_stress.sum()))


def default_basis_size(dataset, n_elements):
    """Functions per element for the data size: observations / 12, clipped to [16, 2000]."""
    per_element = observations(dataset) / OBSERVATIONS_PER_FUNCTION / max(n_elements, 1)
    return int(np.clip(round(per_element), MIN_FUNCTIONS, MAX_FUNCTIONS))


def covalent_floor(z_i, z_j):
    """The shortest plausible distance of two atoms: a fraction of their covalent radii's sum."""
    return COVALENT_FLOOR_FRACTION * (covalent_radii[z_i] + covalent_radii[z_j])


def implausible_distances(dataset, pairs):
    """Structures whose shortest pair is closer than :func:`covalent_floor`: [(s, d, floor)]."""
    out = []
    for s in np.flatnonzero(np.isfinite(pairs.distance)):
        floor = covalent_floor(*pairs.z[s])
        if pairs.distance[s] < floor:
            out.append((int(s), float(pairs.distance[s]), float(floor)))
    return out


def apply_core_repulsion(basis_dict, setting, dataset, cutoff, num_threads=None):
    """Fill the bonds' inner cutoff: ZBL blended in below the shortest training distance.

    ``auto``: the shortest distance is a trimmed minimum: structures whose shortest pair is
    closer than half the sum of the two elements' covalent radii (physically implausible: a
    broken structure) are reported by name and left out, and r_in never falls below that
    floor for the potential's elements, so one bad structure cannot move the ZBL blend to
    where atoms collapse.
    """
    if setting == "none":
        return basis_dict, None
    outliers = []
    if setting == "auto":
        pairs = shortest_pairs(dataset, cutoff, num_threads)
        bad = implausible_distances(dataset, pairs)
        kept = np.ones(len(dataset), dtype=bool)
        for s, d, floor in bad:
            kept[s] = False
            outliers.append({"structure": dataset.names[s], "distance": d, "floor": floor})
        if outliers:
            warnings.warn(
                f"{len(outliers)} training structure(s) have atoms closer than half the sum of "
                "their covalent radii, left out of the automatic ZBL inner cutoff: "
                + "; ".join(f"{o['structure']} ({o['distance']:.3f} Å < {o['floor']:.3f} Å)"
                            for o in outliers[:10])
                + (f" (and {len(outliers) - 10} more)" if len(outliers) > 10 else ""),
                stacklevel=2)
        if not np.isfinite(pairs.distance).any():
            return basis_dict, None
        zs = [atomic_numbers[e] for e in basis_dict["elements"]]
        floor = min(covalent_floor(a, b) for a in zs for b in zs)
        d_min = float(pairs.distance[kept].min(initial=np.inf))  # inf: only the floor is left
        r_in = max(d_min - ZBL_MARGIN, floor) if np.isfinite(d_min) else floor
        delta_in = ZBL_WIDTH
    else:
        r_in, delta_in = setting["r_in"], setting["delta_in"]
    out = copy.deepcopy(basis_dict)
    out["bonds"]["ALL"] = {**out["bonds"]["ALL"], "inner_cutoff_type": "zbl",
                           "core-repulsion": [1.0, 1.0], "r_in": float(r_in),
                           "delta_in": float(delta_in)}
    core = {"type": "zbl", "r_in": float(r_in), "delta_in": float(delta_in)}
    if outliers:
        core["outliers"] = outliers
    return out, core
