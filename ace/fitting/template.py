"""Config files written for the user to keep and edit: a commented fit config with every key at
its default (:func:`write_template`, ``ace init``) and pacemaker's input file translated
(:func:`convert_config`, ``ace convert-config``).

The template loads as it is (:func:`config_template` fills in the four required keys); the keys of
the nonlinear fit are commented out, as they are allowed only with ``fit.method: nonlinear``.
``tests/test_pacemaker.py`` checks that every key the config reader accepts appears here.
"""
from __future__ import annotations

import os

import yaml

from ace.fitting.config import FitConfig
from ace.fitting.config_file import ConfigError, load_yaml
from ace.fitting.pacemaker import is_pacemaker_config, translate
from ace.potential import write_atomic

TEMPLATE = """\
# ace fit config: every key with its default (ace/fitting/config.py explains each).
# Only elements, cutoff, data.train and output are required; delete what you keep default.
# Relative paths are relative to this file. Run: ace fit {name}  (ace fit {name} --dry-run
# first prints the basis size, memory and time the fit needs).
elements: {elements}
cutoff: {cutoff}                     # Å: the radial basis is scaled to it
output: {output}           # the potential; metrics go to <output>.metrics.json
model: {{kind: ace}}                 # or {{kind: traditional, form: bop}} (or eam): a physical
                                    #   form of ~8 parameters instead (docs/physical.md)
data:
  train: {train}                    # file, glob or list; any ASE-readable file, "file@:100"
  test: {test}                      # optional; same forms
  trust_pickle: false               # read pacemaker's pandas pickles (*.pckl.gzip): they
                                    #   can run code when loaded, so only files you trust
  stream: null                      # true: read in chunks, never all at once (large data);
                                    #   null: false, or true with fit.engine dask
  chunk_structures: 256             # structures per chunk when streamed
  keys:                             # where the labels are (null: the stored calculator
    energy: null                    #   results, then info["energy"], arrays["forces"],
    forces: null                    #   info["stress"])
    stress: null
    virial: null                    # info key of a virial (eV), used as -V * stress
    config_type: config_type        # info key grouping structures for weights and errors
    weight: null                    # info key of a per-structure weight
basis:                              # pacemaker's potential sections
  bonds:
    ALL: {{radbase: SBessel, radparameters: [5.25], rcut: {cutoff}, dcut: 0.01}}
  functions:
    number_of_functions_per_element: auto   # or an integer; auto: data size / 12, 16..2000
    ALL: {{nradmax_by_orders: [16, 8, 6, 4, 3], lmax_by_orders: [0, 6, 4, 3, 2]}}
  embeddings:                       # the linear fit needs exactly this; nonlinear default:
                                    #   {{ndensity: 2, fs_parameters: [1, 1, 1, 0.5]}}
    ALL: {{npot: FinnisSinclairShiftedScaled, ndensity: 1, fs_parameters: [1, 1]}}
  # deltaSplineBins: 0.001          # spline step (Å) of exported PACE files
core_repulsion: auto                # auto: ZBL below the shortest training distance; none;
                                    #   or {{r_in: Å, delta_in: Å}}
e0: auto                            # fitted (a free constant: cohesive energies then mean
                                    #   nothing); {{Cu: -0.25, ...}} free-atom energies (eV);
                                    #   isolated: from single-atom structures in the data
weights:
  forces: auto                      # tau_F, by cross-validation; or a number
  stress: auto                      # tau_S; or a number
  config_type: {{}}                   # {{config_type: weight multiplier}}
  energy_kT: null                   # eV/atom: weights exp(-dE/kT) above the lowest energy
  energy_min_weight: 0.01
regularisation:
  l2: auto                          # relative ridge strength, or a number (1e-6 is fine)
  method: cv                        # cv (k-fold), validation (one split) or gcv
  folds: 5
  validation_fraction: 0.1
  seed: 0
  smoothness: 2                     # prior: penalty grows as (1 + n + l)^2; null: scale-free
fit:
  num_threads: null                 # OpenMP threads (null: OMP_NUM_THREADS)
  chunk_rows: 4096                  # rows per normal-equation update (memory vs speed)
  progress: true                    # progress bars, or a line every 10 s with time left
  committee: 32                     # linear fits: members sampled from the Bayesian posterior
                                    #   (0: none); ACECalculator(committee=True) gives stds
  active_set: linear                # <output>.active.yaml for the extrapolation grade:
                                    #   linear (PACE-compatible), full, or none
  engine: inprocess                 # or dask (pip install "ace[dask]"): design rows and
                                    #   error tables chunk by chunk on Dask workers
  scheduler: null                   # dask: null (a LocalCluster here) or "tcp://host:port"
  workers: null                     # dask LocalCluster worker processes (null: Dask's choice)
  threads_per_worker: 1             # dask: OpenMP threads of the core in each task
  method: linear                    # or nonlinear: the keys below, after the linear fit
  # optimizer: auto                 # varpro where it applies, else L-BFGS; BFGS;
  #                                 #   least_squares (small fits)
  # trainable: [coefficients, radial, e0]
  # max_iterations: 300
  # checkpoint_every: 25            # iterations per segment; <output>.checkpoint.json
  # patience: 4                     # segments without validation gain before stopping
  # restarts: 1
  # restart_noise: 0.05
  # batch_size: null                # structures per mini-batch (null: all)
  # ladder: null                    # e.g. [50, 150]: grow the basis in steps
  # radial_l2: 1.0e-6
  # validation_fraction: 0.1
  # seed: 0
  # gtol: 1.0e-9
"""


def config_template(elements=("Cu",), cutoff=5.0, train="train.xyz", test="test.xyz",
                    output="potential.yaml", name="fit.yaml"):
    """The commented config text with the required keys filled in."""
    return TEMPLATE.format(elements="[" + ", ".join(elements) + "]", cutoff=float(cutoff),
                           train=train, test=test, output=output, name=name)


def write_template(path, elements=("Cu",), cutoff=5.0, train="train.xyz", test="test.xyz",
                   output="potential.yaml", force=False):
    """Write :func:`config_template` to ``path`` (atomically); ConfigError if ``path`` exists
    and not ``force``."""
    path = os.fspath(path)
    if os.path.exists(path) and not force:
        raise ConfigError(f"{path} exists; give --force (force=True) to overwrite it")
    write_atomic(path, config_template(elements, cutoff, train, test, output,
                                       os.path.basename(path)))


def convert_config(source, target, force=False):
    """Write the ace config equivalent to pacemaker's input file ``source`` to ``target``, the
    translation's notes (kappa, reference energies, each key left out and why) as comments at
    its top and relative data paths rebased for the directory of ``target``. Returns the notes
    ``[(key, why it is ignored)]``. ConfigError for a file that is not pacemaker's, a key
    that cannot be translated or an existing ``target`` without ``force``."""
    source, target = os.fspath(source), os.fspath(target)
    raw = load_yaml(source)
    if not is_pacemaker_config(raw):
        raise ConfigError(f"{source}: not a pacemaker input file (no potential, backend or "
                          "fit.loss section); ace fit reads it as it is")
    try:
        config, notes = translate(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if os.path.exists(target) and not force:
        raise ConfigError(f"{target} exists; give --force (force=True) to overwrite it")
    source_dir = os.path.dirname(os.path.abspath(source))
    target_dir = os.path.dirname(os.path.abspath(target))
    for key in ("train", "test"):
        if key in config["data"]:
            config["data"][key] = _rebased(config["data"][key], source_dir, target_dir)
    # what is written must load (nothing is read here, so pickles need no trust yet)
    FitConfig.from_dict(config, base_dir=target_dir, trust_pickle=True)
    header = [f"# ace fit config translated from pacemaker's {os.path.basename(source)} "
              "by ace convert-config", "# every key: ace/fitting/config.py (or ace init)"]
    kappa = ((raw.get("fit") or {}).get("loss") or {}).get("kappa")
    if kappa is not None:
        header.append(f"# weights.forces is 3 kappa / (1 - kappa) for fit.loss.kappa {kappa}: "
                      "the same loss as pacemaker's, up to a factor")
    if isinstance((raw.get("data") or {}).get("reference_energy"), dict):
        header.append("# e0 is data.reference_energy per element minus its shift (fixed)")
    if notes:
        header.append("# pacemaker keys left out:")
        header += [f"#   {key}: {why}" for key, why in notes]
    write_atomic(target, "\n".join(header) + "\n"
                 + yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    return notes


def _rebased(paths, source_dir, target_dir):
    """Relative ``paths`` (one or a list) of a file in ``source_dir`` for one in ``target_dir``."""
    def one(path):
        if os.path.isabs(path) or source_dir == target_dir:
            return path
        return os.path.relpath(os.path.join(source_dir, path), target_dir)

    return one(paths) if isinstance(paths, str) else [one(p) for p in paths]
