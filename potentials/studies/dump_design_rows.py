"""Per-structure design rows of the default linear basis (train and test) of an mlearn element,
saved for ridge_prior_cv.py (potentials/README.md, "The ridge's smoothness prior").

    PYTHONPATH=. python potentials/studies/dump_design_rows.py Mo   # -> $ACE_STUDY_DIR/Mo.npz

About 10 minutes per element on one core; the file is about 0.5 GB.
"""
import contextlib, io, os, sys, time
import numpy as np
from ace.data import read_dataset
from ace.fitting.config import FitConfig
from ace.fitting.workflow import build_potential
from ace.evaluator import Evaluator, Structure
from ace.fitting.linear import zero_potential

el = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
D = os.environ.get("MLEARN_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data", "mlearn"))
WORK = os.environ.get("ACE_STUDY_DIR", "/tmp/ace-study")
os.makedirs(WORK, exist_ok=True)
cfg = FitConfig.from_dict({"elements": [el], "cutoff": 5.0,
                           "data": {"train": f"{D}/{el}/train.xyz", "test": f"{D}/{el}/test.xyz"},
                           "output": f"{WORK}/x.yaml"}, base_dir=WORK)
train = read_dataset(cfg.train, cfg.keys); test = read_dataset(cfg.test, cfg.keys)
with contextlib.redirect_stdout(io.StringIO()):
    pot, info = build_potential(cfg, train)
pot.save(f"{WORK}/{el}-basis.yaml")
ev = Evaluator(pot)
off = Evaluator(zero_potential(pot)) if pot.has_core_repulsion else None
out = {}
for name, data in (("train", train), ("test", test)):
    E, Et, N, F, Ft, atom_struct, ctype = [], [], [], [], [], [], []
    t = time.time()
    for s in range(len(data)):
        sl = data.atom_slice(s); n = sl.stop - sl.start
        st = Structure(pot, data.numbers[sl], data.positions[sl], data.cells[s], data.pbc[s])
        nl = ev.neighbours(st, 2)
        rows = ev.design_rows(st, 2, neighbour_list=nl)
        fixed = off.compute(st, 2, neighbour_list=nl) if off else None
        E.append(rows.energy); Et.append(data.energy[s] - (fixed.energy if fixed else 0)); N.append(n)
        F.append(rows.forces.reshape(3 * n, -1)); Ft.append((data.forces[sl] - (fixed.forces if fixed else 0)).reshape(-1))
        atom_struct.append(np.full(3 * n, s)); ctype.append(data.config_type[s])
    print(name, time.time() - t, flush=True)
    out[name] = dict(E=np.array(E), Et=np.array(Et), N=np.array(N), F=np.concatenate(F), Ft=np.concatenate(Ft),
                     Fs=np.concatenate(atom_struct), ctype=np.array(ctype))
fn = pot.functions
deg = np.array([sum(f.ns) + sum(f.ls) for f in fn]) if hasattr(fn[0], "ns") else None
rank = np.array([len(f.ns) for f in fn]) if hasattr(fn[0], "ns") else None
np.savez(f"{WORK}/{el}.npz", **{f"{k}_{n}": v for n, d in out.items() for k, v in d.items()},
         deg=deg, rank=rank, nsum=np.array([sum(f.ns) for f in fn]), lsum=np.array([sum(f.ls) for f in fn]))
print("functions", pot.n_functions, "core", pot.has_core_repulsion)
