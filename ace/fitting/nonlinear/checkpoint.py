"""The fit's state and its checkpoint file: written atomically as JSON after every segment,
read back (and checked to belong to the same fit) on resume."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict

import numpy as np

from ace.fitting.nonlinear.settings import EXTENDABLE
from ace.potential import write_atomic

CHECKPOINT_FORMAT = "ace-nonlinear-checkpoint"
# state fields newer than the checkpoint format: a checkpoint written before them recorded a
# run ended on a failed line search as converged (so not stalled), and no runs
LATER_FIELDS = ("stalled", "runs")


class CheckpointError(ValueError):
    """A checkpoint that is unreadable or belongs to another fit."""


def initial_state(start):
    """The fit's state before its first iteration, from the start potential's dict; the
    checkpoint holds this state as it goes. ``converged``: the optimiser met its gradient
    tolerance; ``stalled``: its line search found no lower point (not converged, but this run
    cannot go on); ``runs``: how the runs before the current one ended."""
    return {"restart": 0, "step": 0, "segment": 0, "iteration": 0, "theta": None,
            "anchor": start, "start": start, "best_in_run": None, "best_in_run_loss": None,
            "stale": 0, "converged": False, "stalled": False, "memory": None, "best": None,
            "best_loss": None, "history": [], "runs": []}


def fingerprint(potential, train, settings, weights, tau, penalty):
    """A hash of everything that fixes the fit's path but the stopping rules (EXTENDABLE)."""
    h = hashlib.sha256()
    fixed = {k: v for k, v in asdict(settings).items() if k not in EXTENDABLE}
    payload = {"potential": potential.to_dict(), "n_atoms": train.n_atoms.tolist(),
               "config_type": [str(c) for c in train.config_type], "settings": fixed,
               "tau": {k: float(v) for k, v in tau.items()}}
    h.update(json.dumps(payload, sort_keys=True, default=str).encode())
    # the data by content, not by file name: a checkpoint stays valid when the project or
    # the data directory moves
    for array in (weights, penalty, train.numbers, train.positions, train.cells, train.pbc,
                  train.energy, train.forces, train.stress):
        h.update(np.ascontiguousarray(array, dtype=float).tobytes())
    return h.hexdigest()


def write_checkpoint(path, state, fingerprint, context=None):
    write_atomic(path, json.dumps({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint,
                                   "state": state, "context": context}))


def load_checkpoint(path):
    """The checkpoint's JSON, checked to be one of ours (not yet that it is this fit's)."""
    if not path or not os.path.exists(path):
        raise CheckpointError(f"no checkpoint to resume from at {path}")
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ace nonlinear-fit checkpoint")
    return data


def read_checkpoint_context(path):
    """The ``context`` a fit stored with its checkpoint at ``path`` (None if it stored none)."""
    return load_checkpoint(path).get("context")


def read_checkpoint(path, fingerprint):
    """The state stored at ``path``, which must belong to the fit with this ``fingerprint``."""
    data = load_checkpoint(path)
    if data.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path}: the checkpoint belongs to a different fit (other data, "
                              "basis or settings); remove it or fit without --resume")
    state = data.get("state")
    fields = initial_state(None)
    if isinstance(state, dict):
        state = {**{k: fields[k] for k in LATER_FIELDS}, **state}
    missing = [k for k in fields if k not in state] if isinstance(state, dict) else ["state"]
    if missing:
        raise CheckpointError(f"{path}: not an ace nonlinear-fit checkpoint (missing {missing})")
    return state
