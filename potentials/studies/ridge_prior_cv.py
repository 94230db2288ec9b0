"""Cross-validation study of the ridge's scaling (scale-free, second moment, smoothness prior)
and of selection rules (sum or max of relative RMSEs, pooled or config_type-balanced energies)
on the design rows of dump_design_rows.py. Choices use the training set only (5-fold CV, the
fit's own fold rule); the test MAE and the error on held-out surfaces (trained without them) are
reported beside them, never used to choose.

    python potentials/studies/ridge_prior_cv.py Mo prior 2   # mode data|raw|prior, exponent p
"""
import json, os, sys, time
import numpy as np, scipy.linalg

WORK = os.environ.get("ACE_STUDY_DIR", "/tmp/ace-study")

def folds_of(ctype, n_folds=5, seed=0):
    rng = np.random.default_rng(seed); folds = np.zeros(len(ctype), dtype=int); start = 0
    for c in sorted(set(ctype.tolist())):
        m = np.flatnonzero(ctype == c); rng.shuffle(m)
        folds[m] = (start + np.arange(len(m))) % n_folds; start += len(m)
    return folds

class Data:
    def __init__(self, z, split):
        self.E = z[f"E_{split}"] / z[f"N_{split}"][:, None]    # per-atom energy rows
        self.y = z[f"Et_{split}"] / z[f"N_{split}"]
        self.N = z[f"N_{split}"]; self.F = z[f"F_{split}"]; self.Ft = z[f"Ft_{split}"]
        self.Fs = z[f"Fs_{split}"]; self.ctype = z[f"ctype_{split}"]

    def parts(self, part_of, n):
        """per part: (Gram_E with E0 col, rhs_E, W_E, Gram_F, rhs_F, W_F)"""
        out = []
        for k in range(n):
            s = np.flatnonzero(part_of == k)
            A = np.hstack([self.E[s], np.ones((len(s), 1))])
            rows = np.isin(self.Fs, s)
            Fk = self.F[rows]
            out.append(dict(GE=A.T @ A, bE=A.T @ self.y[s], WE=len(s),
                            GF=scipy.linalg.blas.dsyrk(1.0, Fk.T, trans=0) if len(Fk) else 0, bF=Fk.T @ self.Ft[rows], WF=len(Fk)))
            GF = out[-1]["GF"]
            if len(Fk):
                out[-1]["GF"] = GF + np.triu(GF, 1).T
        return out

def solve_path(parts, tau, l2s, scale_mode, prior):
    """coefficient vectors [len(l2s), nf+1] for the summed parts"""
    nf = parts[0]["GF"].shape[0]
    WE = sum(p["WE"] for p in parts); WF = sum(p["WF"] for p in parts)
    G = sum(p["GE"] for p in parts) / WE; b = sum(p["bE"] for p in parts) / WE
    G[:nf, :nf] += tau / WF * sum(p["GF"] for p in parts); b[:nf] += tau / WF * sum(p["bF"] for p in parts)
    # eliminate E0 (last column, unpenalised): c-part Schur complement
    gee = G[nf, nf]; gec = G[nf, :nf]
    Gc = G[:nf, :nf] - np.outer(gec, gec) / gee; bc = b[:nf] - gec * b[nf] / gee
    diag = np.diag(Gc).copy()
    active = diag > 1e-12 * diag.max()
    if scale_mode == "data":
        d = diag * prior
    elif scale_mode == "raw":  # second moment of the function, E0 not projected out
        d = np.diag(G[:nf, :nf]).copy() * prior
    else:  # pure prior relative to the mean data diagonal
        d = np.mean(diag[active]) * prior
    d = np.where(active, d, 1.0)
    s = 1 / np.sqrt(d)
    Gs = Gc * s[:, None] * s[None, :]
    w, V = scipy.linalg.eigh(Gs, check_finite=False)
    w = np.maximum(w, 0); beta = V.T @ (bc * s)
    out = []
    for l2 in l2s:
        c = s * (V @ (beta / (w + l2))); c[~active] = 0
        e0 = (b[nf] - gec @ c) / gee
        out.append(np.append(c, e0))
    return np.array(out)

def predict(data, params, structs):
    """per-structure per-atom energy errors and force errors per component for structs."""
    rows = np.isin(data.Fs, structs)
    eE = data.E[structs] @ params[:, :-1].T + params[:, -1] - data.y[structs][:, None]
    eF = data.F[rows] @ params[:, :-1].T - data.Ft[rows][:, None]
    return eE, eF, data.Fs[rows]

FORCES = [10.0 ** (k / 2) for k in range(-5, -2)]
L2 = [10.0 ** k for k in range(-12, -2)]

def cv_table(data, structs, n_folds, scale_mode, prior):
    """{(tau,l2): pooled held-out errors} for a CV over the given structures."""
    folds = np.full(len(data.y), -1); folds[structs] = folds_of(data.ctype[structs], n_folds)
    parts = data.parts(folds, n_folds)
    eE = {}; eF = {}
    for tau in FORCES:
        pe, pf, ps = [], [], []
        for k in range(n_folds):
            params = solve_path([p for j, p in enumerate(parts) if j != k], tau, L2, scale_mode, prior)
            a, b, c = predict(data, params, np.flatnonzero(folds == k))
            pe.append((np.flatnonzero(folds == k), a)); pf.append(b)
        idx = np.concatenate([x[0] for x in pe]); E = np.vstack([x[1] for x in pe]); F = np.vstack(pf)
        for j, l2 in enumerate(L2):
            eE[(tau, l2)] = (idx, E[:, j]); eF[(tau, l2)] = F[:, j]
    return eE, eF, parts, folds

def metrics(data, idx, e, f):
    ct = data.ctype[idx]
    groups = sorted(set(ct.tolist()))
    return dict(e_rmse=float(np.sqrt(np.mean(e ** 2))), e_mae=float(np.mean(np.abs(e))),
                e_bal=float(np.mean([np.sqrt(np.mean(e[ct == g] ** 2)) for g in groups])),
                f_rmse=float(np.sqrt(np.mean(f ** 2))), f_mae=float(np.mean(np.abs(f))))

RULES = {
    "sum": lambda m, best: m["e_rmse"] / best["e_rmse"] + m["f_rmse"] / best["f_rmse"],
    "max": lambda m, best: max(m["e_rmse"] / best["e_rmse"], m["f_rmse"] / best["f_rmse"]),
    "bal_sum": lambda m, best: m["e_bal"] / best["e_bal"] + m["f_rmse"] / best["f_rmse"],
    "bal_max": lambda m, best: max(m["e_bal"] / best["e_bal"], m["f_rmse"] / best["f_rmse"]),
}

def choose(table):
    best = {k: min(m[k] for m in table.values()) for k in ("e_rmse", "e_bal", "f_rmse")}
    out = {}
    for name, rule in RULES.items():
        key = min(table, key=lambda c: rule(table[c], best))
        m = table[key]
        out[name] = dict(tau=key[0], l2=key[1], **m,
                         e_rel=m["e_rmse"] / best["e_rmse"], ebal_rel=m["e_bal"] / best["e_bal"],
                         f_rel=m["f_rmse"] / best["f_rmse"])
    return out

def run(el, scale_mode, p):
    z = np.load(os.path.join(WORK, f"{el}.npz"), allow_pickle=False)
    tr, te = Data(z, "train"), Data(z, "test")
    deg = z["nsum"] + z["lsum"]
    prior = ((1.0 + deg) / (1.0 + deg.mean())) ** p
    res = {}
    for setting in ("all", "no_surface"):
        structs = np.arange(len(tr.y)) if setting == "all" else np.flatnonzero(tr.ctype != "Surface")
        eE, eF, parts, folds = cv_table(tr, structs, 5, scale_mode, prior)
        table = {c: metrics(tr, eE[c][0], eE[c][1], eF[c]) for c in eE}
        chosen = choose(table)
        for rule, ch in chosen.items():
            params = solve_path(parts, ch["tau"], [ch["l2"]], scale_mode, prior)
            if setting == "all":
                e, f, _ = predict(te, params, np.arange(len(te.y)))
                ch["test_e_mae"] = float(np.mean(np.abs(e))) * 1000; ch["test_f_mae"] = float(np.mean(np.abs(f)))
            else:
                s_tr = np.flatnonzero(tr.ctype == "Surface"); s_te = np.flatnonzero(te.ctype == "Surface")
                e1, f1, _ = predict(tr, params, s_tr); e2, f2, _ = predict(te, params, s_te)
                ch["surf_e_mae"] = float(np.mean(np.abs(np.concatenate([e1[:, 0], e2[:, 0]])))) * 1000
                ch["surf_f_mae"] = float(np.mean(np.abs(np.concatenate([f1[:, 0], f2[:, 0]]))))
                rest = np.flatnonzero(te.ctype != "Surface")
                e, f, _ = predict(te, params, rest)
                ch["indomain_test_e_mae"] = float(np.mean(np.abs(e))) * 1000; ch["indomain_test_f_mae"] = float(np.mean(np.abs(f)))
        res[setting] = chosen
    return res

if __name__ == "__main__":
    el, mode, p = sys.argv[1], sys.argv[2], float(sys.argv[3])
    t = time.time()
    r = run(el, mode, p)
    json.dump(r, open(os.path.join(WORK, f"res_{el}_{mode}_{p:g}.json"), "w"), indent=1)
    for setting, ch in r.items():
        for rule, c in ch.items():
            print(el, mode, p, setting, rule, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()})
    print("time", time.time() - t)
