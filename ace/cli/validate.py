"""Validate potentials: physical properties and figures, side by side, against references.

Relaxes the crystal and computes the lattice constant, the equation of state (V0, E0, B0,
B0'), elastic constants by stress-strain with relaxed ions (with a strain-step convergence
check), the relaxed vacancy formation energy, (100)/(110)/(111) surface energies, the phonon
dispersion (imaginary modes flagged), the dimer curve, NVE energy drift and NVT stability near
and above the melting point. With --data: error tables per config_type, parity plots, error
distributions and the force error against the nearest-neighbour distance. Writes
DIR/report.md with PNG figures (matplotlib: pip install 'ace[plot]') and DIR/report.json.
References: --reference REFS.yaml (e.g. potentials/references/Mo.yaml), else the values the
data's own strained crystals give. --quick: data, EOS and elastic constants only.
"""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("potentials", nargs="+", metavar="POTENTIAL",
                        help="potential files (ace YAML, or PACE .yaml/.yace)")
    parser.add_argument("--data", nargs="+", default=None, metavar="FILES",
                        help="labelled data files, glob patterns or file@slice")
    parser.add_argument("--reference", default=None, metavar="REFS.yaml",
                        help="reference values with units and sources")
    parser.add_argument("--structure", default=None, metavar="bcc|fcc|diamond|hcp|FILE",
                        help="the crystal (default: the reference's, else ASE's ground state "
                             "of the element)")
    parser.add_argument("-o", "--output-dir", default="validation", metavar="DIR",
                        help="report directory (default: ./validation)")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="JSON report path (default: DIR/report.json)")
    parser.add_argument("--quick", action="store_true",
                        help="data figures, EOS and elastic constants only")
    parser.add_argument("--num-threads", type=int, default=None, help="OpenMP threads")
    parser.add_argument("--md-steps", type=int, nargs=2, default=None, metavar=("NVE", "NVT"),
                        help="MD steps (default 500 NVE, 400 per NVT temperature)")


def run(args):
    from ace.cli import fail
    from ace.data import DataError
    from ace.api import validate
    from ace.validation.references import ReferenceError

    try:
        report = validate(args.potentials, data=args.data, reference=args.reference,
                          structure=args.structure, output_dir=args.output_dir,
                          json_path=args.json, quick=args.quick, num_threads=args.num_threads,
                          md_steps=tuple(args.md_steps) if args.md_steps else None)
    except (DataError, ReferenceError, ValueError, OSError) as exc:
        return fail("validate", str(exc))
    import os
    print(f"wrote {os.path.join(args.output_dir, 'report.md')}"
          + (f", {len(report['figures'])} figures" if report["figures"] else "")
          + f" and {args.json or os.path.join(args.output_dir, 'report.json')}")
    return 0
