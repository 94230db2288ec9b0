"""Translate pacemaker's input.yaml into an ace fit config (ace fit reads either).

Every pacemaker key with an ace equivalent is mapped (the table is in
ace/fitting/pacemaker.py); each key left out is listed with the reason, on stderr and as a
comment at the top of the written config. Relative data paths are rewritten for the directory
of the output file.
"""
from __future__ import annotations

import os


def add_arguments(parser):
    parser.add_argument("input", help="pacemaker input file (input.yaml)")
    parser.add_argument("-o", "--output", required=True, help="ace config to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def run(args):
    import sys

    import yaml

    from ace.cli import fail
    from ace.fitting.config import ConfigError, FitConfig, load_yaml
    from ace.fitting.pacemaker import is_pacemaker_config, translate
    from ace.potential import write_atomic

    try:
        raw = load_yaml(args.input)
        if not is_pacemaker_config(raw):
            raise ConfigError(f"{args.input}: not a pacemaker input file (no potential, "
                              "backend or fit.loss section); ace fit reads it as it is")
        try:
            config, notes = translate(raw)
        except ConfigError as exc:
            raise ConfigError(f"{args.input}: {exc}") from exc
        if os.path.exists(args.output) and not args.force:
            raise ConfigError(f"{args.output} exists; give --force to overwrite it")
        source_dir = os.path.dirname(os.path.abspath(args.input))
        target_dir = os.path.dirname(os.path.abspath(args.output))
        for key in ("train", "test"):
            if key in config["data"]:
                config["data"][key] = _rebased(config["data"][key], source_dir, target_dir)
        # what is written must load (nothing is read here, so pickles need no trust yet)
        FitConfig.from_dict(config, base_dir=target_dir, trust_pickle=True)
    except (ConfigError, ValueError, OSError) as exc:
        return fail("convert-config", str(exc))
    header = [f"# ace fit config translated from pacemaker's {os.path.basename(args.input)} "
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
    for key, why in notes:
        print(f"ignored {key}: {why}", file=sys.stderr)
    write_atomic(args.output, "\n".join(header) + "\n"
                 + yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    print(f"wrote {args.output} ({len(notes)} pacemaker key(s) left out, listed at its top)")
    return 0


def _rebased(paths, source_dir, target_dir):
    def one(path):
        if os.path.isabs(path) or source_dir == target_dir:
            return path
        return os.path.relpath(os.path.join(source_dir, path), target_dir)

    return one(paths) if isinstance(paths, str) else [one(p) for p in paths]
