"""A commented fit config with every key at its default (what ``ace init`` writes).

The text loads as it is (:func:`config_template` fills in the four required keys); the keys of
the nonlinear fit are commented out, as they are allowed only with ``fit.method: nonlinear``.
``tests/test_pacemaker.py`` checks that every key the config reader accepts appears here.
"""
from __future__ import annotations

TEMPLATE = """\
# ace fit config: every key with its default (ace/fitting/config.py explains each).
# Only elements, cutoff, data.train and output are required; delete what you keep default.
# Relative paths are relative to this file. Run: ace fit {name}  (ace fit {name} --dry-run
# first prints the basis size, memory and time the fit needs).
elements: {elements}
cutoff: {cutoff}                     # Å: the radial basis is scaled to it
output: {output}           # the potential; metrics go to <output>.metrics.json
data:
  train: {train}                    # file, glob or list; any ASE-readable file, "file@:100"
  test: {test}                      # optional; same forms
  trust_pickle: false               # read pacemaker's pandas pickles (*.pckl.gzip): they
                                    #   can run code when loaded, so only files you trust
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
e0: auto                            # fitted; or {{Cu: -0.25, ...}} (eV, fixed)
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
fit:
  num_threads: null                 # OpenMP threads (null: OMP_NUM_THREADS)
  chunk_rows: 4096                  # rows per normal-equation update (memory vs speed)
  progress: true                    # progress bars, or a line every 10 s with time left
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
