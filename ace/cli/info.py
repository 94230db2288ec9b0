"""Describe a potential: elements, cutoffs, radial basis, functions per order, E0,
core repulsion, provenance (how it was fitted) and its stored error metrics.
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("potential", help="potential file (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def describe(potential):
    """A JSON-friendly summary of ``potential``."""
    el = potential.elements
    bonds = {f"{el[i]}-{el[j]}": {"radbase": b.radbase, "rcut": b.rcut, "nradbase": b.nradbase,
                                   "nradmax": b.nradmax, "lmax": b.lmax,
                                   "inner_cutoff_type": b.inner_cutoff_type, "r_in": b.r_in,
                                   "delta_in": b.delta_in}
             for (i, j), b in sorted(potential.bonds.items()) if i <= j}
    embeddings = {el[i]: {"npot": e.npot, "ndensity": e.ndensity,
                          "fs_parameters": list(e.fs_parameters)}
                  for i, e in sorted(potential.embeddings.items())}
    meta = potential.metadata or {}
    fit = meta.get("fit") or {}
    report = fit.get("report") or {}
    provenance = {k: meta[k] for k in ("created", "ace_version") if k in meta}
    if fit:
        config = fit.get("config") or {}
        provenance.update({"train": config.get("train"), "test": config.get("test"),
                           **{k: report[k] for k in ("l2", "weights", "method", "rank",
                                                     "condition", "n_train_structures")
                              if k in report}})
    return {"elements": el, "n_functions": potential.n_functions, "cutoff": potential.cutoff,
            "functions_per_order": {e: dict(sorted(c.items()))
                                    for e, c in potential.counts().items()},
            "e0": dict(zip(el, map(float, potential.e0))), "bonds": bonds,
            "embeddings": embeddings, "core_repulsion": potential.has_core_repulsion,
            "provenance": provenance, "metrics": meta.get("metrics") or {}}


def readable(value):
    """``value`` for a person: floats to 4 significant digits (the condition number
    980267.8372971191 as 9.803e+05), lists and mappings item by item."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {readable(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(readable(v) for v in value) + "]"
    return str(value)


def run(args):
    import json

    from ace.calculator import load_potential
    from ace.cli import fail
    from ace.fitting.metrics import format_table

    try:
        potential = load_potential(args.potential)
    except (ValueError, OSError) as exc:
        return fail("info", str(exc))
    summary = describe(potential)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"{args.potential}: ACE potential, {summary['n_functions']} functions, "
          f"elements {', '.join(summary['elements'])}, cutoff {summary['cutoff']:g} Å")
    for element, counts in summary["functions_per_order"].items():
        orders = ", ".join(f"order {k}: {n}" for k, n in counts.items())
        print(f"  {element}: {sum(counts.values())} functions ({orders}); E0 "
              f"{summary['e0'][element]:.6g} eV; embedding {summary['embeddings'][element]['npot']}"
              f" x{summary['embeddings'][element]['ndensity']}")
    for pair, b in summary["bonds"].items():
        inner = "" if b["inner_cutoff_type"] == "distance" and b["r_in"] == 0 else \
            f", inner {b['inner_cutoff_type']} r_in {b['r_in']:g} Å (width {b['delta_in']:g})"
        print(f"  bond {pair}: {b['radbase']} rcut {b['rcut']:g} Å, nradbase {b['nradbase']}, "
              f"nradmax {b['nradmax']}, lmax {b['lmax']}{inner}")
    if summary["provenance"]:
        print("provenance:")
        for key, value in summary["provenance"].items():
            print(f"  {key}: {readable(value)}")
    for name, table in summary["metrics"].items():
        print()
        print(format_table(table, f"{name} errors (stored)"))
    return 0
