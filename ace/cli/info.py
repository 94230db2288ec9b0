"""Describe a potential: elements, cutoffs, radial basis, functions per order, E0,
core repulsion, provenance (how it was fitted) and its stored error metrics.
From Python: ace.describe(potential).
"""
from __future__ import annotations


def describe(potential):
    """The summary this command prints: :func:`ace.describe` (imported when first needed, so
    that building the command's parser stays cheap)."""
    from ace.api import describe as summary
    return summary(potential)


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


def add_arguments(parser):
    parser.add_argument("potential", help="potential file (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args):
    import json

    from ace.cli import fail
    from ace.fitting.metrics import format_table

    try:
        summary = describe(args.potential)
    except (ValueError, OSError) as exc:
        return fail("info", str(exc))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if "kind" in summary:
        print_physical(args.potential, summary)
    else:
        print_ace(args.potential, summary)
    if summary["provenance"]:
        print("provenance:")
        for key, value in summary["provenance"].items():
            print(f"  {key}: {readable(value)}")
    for name, table in summary["metrics"].items():
        print()
        print(format_table(table, f"{name} errors (stored)"))
    return 0


def print_physical(path, summary):
    print(f"{path}: {summary['kind']} potential, {summary['form']} form, "
          f"{summary['n_parameters']} parameters, elements {', '.join(summary['elements'])}, "
          f"cutoff {summary['cutoff']:g} Å (width {summary['cutoff_width']:g} Å)")
    for element, values in summary["parameters"].items():
        print(f"  {element}: E0 {summary['e0'][element]:.6g} eV; {readable(values)}")
    if "descriptor" in summary:  # physically-informed: p_i = p0 + C B_i
        d = summary["descriptor"]
        print(f"  local parameters p_i = p0 (above) + C B_i: descriptor of "
              f"{readable(d['functions'])} B-functions, cutoff {d['cutoff']:g} Å; "
              f"penalty tau {summary['tau']:g}")
        for element, norms in summary["coefficient_norms"].items():
            print(f"  {element}: |C| per parameter {readable(norms)}")


def print_ace(path, summary):
    print(f"{path}: ACE potential, {summary['n_functions']} functions, "
          f"elements {', '.join(summary['elements'])}, cutoff {summary['cutoff']:g} Å")
    for element, counts in summary["functions_per_order"].items():
        orders = ", ".join(f"order {k}: {n}" for k, n in counts.items())
        print(f"  {element}: {sum(counts.values())} functions ({orders}); E0 "
              f"{summary['e0'][element]:.6g} eV; embedding {summary['embeddings'][element]['npot']}"
              f" x{summary['embeddings'][element]['ndensity']}")
    if summary["e0_source"]:
        print(f"  E0: {summary['e0_source']}")
    for pair, b in summary["bonds"].items():
        inner = "" if b["inner_cutoff_type"] == "distance" and b["r_in"] == 0 else \
            f", inner {b['inner_cutoff_type']} r_in {b['r_in']:g} Å (width {b['delta_in']:g})"
        print(f"  bond {pair}: {b['radbase']} rcut {b['rcut']:g} Å, nradbase {b['nradbase']}, "
              f"nradmax {b['nradmax']}, lmax {b['lmax']}{inner}")
