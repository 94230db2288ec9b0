"""Fuzz the potential loaders: seeded mutants of a small potential, in three formats (ours, PACE
.yace, pacemaker .yaml), each loaded (and, when it loads, evaluated on a small structure) in a
subprocess with a memory cap and a timeout.

Every mutant must end in one of: loaded, or refused with ``PotentialFileError`` /
``PaceFormatError`` (a clean refusal naming the file); anything else is a failure: another
exception type ("unclean"), the memory cap reached ("memory"), the timeout ("hang") or the
process dying ("crash"). Half of the mutants of our format get a fresh checksum, as an attacker
would write it, so that the mutations reach past the checksum into the parser and validation.

    python tests/fuzz_loaders.py --mutants 12000 --seed 0      # the full run (tests/README.md)

The test suite runs a few hundred (tests/test_fuzz_loaders.py).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import subprocess
import sys
import time
from collections import Counter

FORMATS = ("ace", "yace", "pace-yaml")
MEMORY_CAP = 3 * 2**30  # bytes of address space per worker
TIMEOUT = 10.0  # s per mutant
BATCH = 100  # mutants per worker process (amortises the imports)
CLEAN = ("PotentialFileError", "PaceFormatError")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ace_parent():
    """The directory the workers import ace from: this process's ace (the installed package in
    CI, whose source tree has no compiled core), else the repository."""
    try:
        import ace
    except ImportError:
        return ROOT
    return os.path.dirname(os.path.dirname(os.path.abspath(ace.__file__)))


ACE_PARENT = _ace_parent()

# values that have broken parsers before: huge, tiny, negative, non-finite, wrong type
NASTY_VALUES = ["0", "-1", "1e308", "-1e308", "1e400", ".nan", ".inf", "-.inf", "3000",
                "1000000000000", "9" * 40, "2147483648", "-2147483649", "1.5", "null", "[]",
                "{}", "''", "true", "No", "[1, [2]]", "0x10", "1e-320", "&x 1", "*undefined",
                "!!python/object:os.system ls", "\"\\udcff\""]


# --------------------------------------------------------------------------- the seed files

def seed_files():
    """{format: text} of a small two-element potential with core repulsion."""
    import tempfile

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import random_potential

    from ace.pace import export_pace_yaml, export_yace

    pot = random_potential(["Al", "Ni"], orders=((3, 2, 1), (0, 2, 1)), inner="zbl", seed=5,
                           rcut=4.0)
    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        pot.save(os.path.join(tmp, "p.yaml"))
        export_yace(pot, os.path.join(tmp, "p.yace"))
        pot.e0[:] = 0.0
        export_pace_yaml(pot, os.path.join(tmp, "p-pace.yaml"))
        for name, fmt in (("p.yaml", "ace"), ("p.yace", "yace"), ("p-pace.yaml", "pace-yaml")):
            with open(os.path.join(tmp, name)) as fh:
                texts[fmt] = fh.read()
    return texts


# --------------------------------------------------------------------------- mutations

def mutate(text, rng):
    """One to three random edits of ``text`` (returns bytes: some edits are not UTF-8)."""
    data = text.encode()
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(MUTATIONS)(data, rng)
    return data


def _flip_byte(data, rng):
    if not data:
        return data
    k = rng.randrange(len(data))
    return data[:k] + bytes([rng.randrange(256)]) + data[k + 1:]


def _delete_span(data, rng):
    k = rng.randrange(len(data) + 1)
    return data[:k] + data[k + rng.randint(1, 40):]


def _truncate(data, rng):
    return data[:rng.randrange(len(data) + 1)]


def _duplicate_line(data, rng):
    lines = data.split(b"\n")
    k = rng.randrange(len(lines))
    return b"\n".join(lines[:k + 1] + [lines[k]] + lines[k + 1:])


def _delete_line(data, rng):
    lines = data.split(b"\n")
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _swap_lines(data, rng):
    lines = data.split(b"\n")
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[a], lines[b] = lines[b], lines[a]
    return b"\n".join(lines)


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_KEY = re.compile(rb"([A-Za-z_][A-Za-z_0-9-]*):")


def _replace_number(data, rng):
    matches = list(_NUMBER.finditer(data))
    if not matches:
        return data
    m = rng.choice(matches)
    return data[:m.start()] + rng.choice(NASTY_VALUES).encode() + data[m.end():]


def _scale_number(data, rng):
    matches = list(_NUMBER.finditer(data))
    if not matches:
        return data
    m = rng.choice(matches)
    try:
        value = float(m.group()) * rng.choice([-1, 0, 2, 10, 1000, 1e6, 1e100])
    except ValueError:
        return data
    return data[:m.start()] + repr(value).encode() + data[m.end():]


def _rename_key(data, rng):
    matches = list(_KEY.finditer(data))
    if not matches:
        return data
    m = rng.choice(matches)
    other = rng.choice(matches).group(1)
    return data[:m.start()] + other + b":" + data[m.end():]


def _alias_bomb(data, rng):
    """A billion-laughs alias in place of a list value."""
    width, levels = rng.randint(5, 12), rng.randint(4, 9)
    lines = [b"z0: &z0 [" + b", ".join([b"1.0"] * width) + b"]"]
    for k in range(1, levels):
        lines.append(f"z{k}: &z{k} [".encode() + b", ".join([f"*z{k - 1}".encode()] * width)
                     + b"]")
    bomb = b"\n".join(lines) + b"\n"
    starts = [m.start() for m in re.finditer(rb"\[\[", data)] or \
             [m.start() for m in re.finditer(rb"\[", data)]
    if not starts:
        return bomb + data
    k = rng.choice(starts)
    end = data.find(b"]", k)
    depth, j = 0, k
    while j < len(data):  # the matching bracket
        if data[j:j + 1] == b"[":
            depth += 1
        elif data[j:j + 1] == b"]":
            depth -= 1
            if depth == 0:
                end = j
                break
        j += 1
    return bomb + data[:k] + f"*z{levels - 1}".encode() + data[end + 1:]


def _non_utf8(data, rng):
    k = rng.randrange(len(data) + 1)
    return data[:k] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xfe\xff"]) + data[k:]


MUTATIONS = [_flip_byte, _delete_span, _truncate, _duplicate_line, _delete_line, _swap_lines,
             _replace_number, _replace_number, _scale_number, _rename_key, _alias_bomb, _non_utf8]


def resign(data):
    """Our format with the checksum of the mutated body (as an attacker would write it)."""
    import hashlib

    from ace.potential import CHECKSUM_PREFIX
    first, _, body = data.partition(b"\n")
    if not first.startswith(CHECKSUM_PREFIX.encode()):
        return data
    try:
        digest = hashlib.sha256(body.decode().encode()).hexdigest()
    except UnicodeDecodeError:
        return data
    return CHECKSUM_PREFIX.encode() + digest.encode() + b"\n" + body


def mutant(texts, fmt, seed):
    """The bytes of mutant ``seed`` of format ``fmt`` (deterministic)."""
    rng = random.Random(f"{fmt}:{seed}")
    data = mutate(texts[fmt], rng)
    if fmt == "ace" and rng.random() < 0.5:
        data = resign(data)
    return data


# --------------------------------------------------------------------------- the worker

def worker(directory):
    """Load the mutants named on stdin (one JSON [index, path] a line); print one JSON result a
    line: ["start", index] before, [index, outcome, detail] after."""
    import resource
    import warnings

    cap = int(os.environ.get("ACE_FUZZ_MEMORY_CAP", MEMORY_CAP))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    warnings.simplefilter("ignore")
    import numpy as np
    from ase.build import bulk

    from ace.calculator import ACECalculator, load_potential
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.numbers[1] = 28
    print(json.dumps(["ready"]), flush=True)
    for line in sys.stdin:
        index, path = json.loads(line)
        print(json.dumps(["start", index]), flush=True)
        try:
            pot = load_potential(path)
            outcome, detail = "loaded", ""
            try:
                atoms.calc = ACECalculator(pot, num_threads=1)
                energy = atoms.get_potential_energy()
                if not np.isfinite(energy):
                    outcome, detail = "unclean", f"non-finite energy {energy}"
            except (ValueError, FloatingPointError) as exc:
                detail = f"evaluation refused: {type(exc).__name__}: {exc}"[:300]
        except CLEAN_TYPES as exc:
            outcome, detail = "refused", str(exc)[:300]
            if path not in str(exc):
                outcome, detail = "unclean", f"message does not name the file: {exc}"[:300]
        except MemoryError as exc:
            outcome, detail = "memory", str(exc)[:300]
        except Exception as exc:  # noqa: BLE001 - the point is to record every other type
            outcome, detail = "unclean", f"{type(exc).__name__}: {exc}"[:300]
        print(json.dumps([index, outcome, detail]), flush=True)


def _clean_types():
    from ace.pace import PaceFormatError
    from ace.potential import PotentialFileError
    return (PotentialFileError, PaceFormatError)


# --------------------------------------------------------------------------- the driver

def run(n_mutants, seed=0, directory=None, batch=BATCH, timeout=TIMEOUT, log=None):
    """Fuzz ``n_mutants`` mutants (split evenly over FORMATS); returns (counts, failures).

    counts: {format: Counter(outcome)}; failures: [(format, seed, outcome, detail)] for every
    outcome other than loaded / refused.
    """
    import tempfile

    texts = seed_files()
    own_dir = directory is None
    directory = directory or tempfile.mkdtemp(prefix="ace-fuzz-")
    jobs = []
    for k in range(n_mutants):
        fmt = FORMATS[k % len(FORMATS)]
        index = seed * 10**7 + k
        suffix = {"ace": ".yaml", "yace": ".yace", "pace-yaml": ".yaml"}[fmt]
        path = os.path.join(directory, f"m{k}-{fmt}{suffix}")
        with open(path, "wb") as fh:
            fh.write(mutant(texts, fmt, index))
        jobs.append((k, fmt, index, path))
    counts = {fmt: Counter() for fmt in FORMATS}
    failures = []
    position = 0
    start = time.perf_counter()
    while position < len(jobs):
        chunk = jobs[position:position + batch]
        results = _run_batch(chunk, timeout)
        for (k, fmt, index, path), (outcome, detail) in zip(chunk, results):
            counts[fmt][outcome] += 1
            if outcome not in ("loaded", "refused"):
                failures.append((fmt, index, outcome, detail))
        position += len(results)
        if log:
            log(f"{position}/{len(jobs)} mutants, {time.perf_counter() - start:.0f} s, "
                f"{len(failures)} failures")
    if own_dir:
        import shutil
        shutil.rmtree(directory, ignore_errors=True)
    return counts, failures


def _run_batch(chunk, timeout):
    """Results [(outcome, detail)] of a prefix of ``chunk`` (at least one): a worker that dies or
    hangs ends the batch at that mutant."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               ACE_FUZZ_MEMORY_CAP=str(MEMORY_CAP),
               PYTHONPATH=os.pathsep.join(filter(None, [ACE_PARENT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
    for k, fmt, index, path in chunk:
        proc.stdin.write(json.dumps([k, path]) + "\n")
    proc.stdin.close()
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    results, current = [], None
    deadline = time.monotonic() + 120.0  # imports
    try:
        while len(results) < len(chunk):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                results.append(("hang", f"no answer within {timeout:g} s"))
                break
            line = proc.stdout.readline()
            if not line:  # the worker died
                code = proc.wait()
                results.append(("crash", f"worker exit status {code}"))
                break
            message = json.loads(line)
            if message[0] in ("ready", "start"):
                current = message
                deadline = time.monotonic() + timeout
                continue
            results.append((message[1], message[2]))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        selector.close()
        proc.stdout.close()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        global CLEAN_TYPES
        CLEAN_TYPES = _clean_types()
        worker(None)
        return 0
    start = time.perf_counter()
    counts, failures = run(args.mutants, args.seed, batch=args.batch,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - start
    total = Counter()
    for fmt in FORMATS:
        total.update(counts[fmt])
        print(f"{fmt:<10} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts[fmt].items())))
    print(f"{'all':<10} " + ", ".join(f"{k}: {v}" for k, v in sorted(total.items())))
    print(f"{args.mutants} mutants in {seconds:.0f} s; {len(failures)} failures")
    for fmt, index, outcome, detail in failures[:50]:
        print(f"  {fmt} mutant {index}: {outcome}: {detail}")
    return 1 if failures else 0


CLEAN_TYPES = ()

if __name__ == "__main__":
    sys.exit(main())
