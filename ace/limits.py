"""Documented bounds on every size a potential file, a fit config or a calculator can ask for.

A file of a few hundred bytes can otherwise ask for terabytes (``lmax: 3000``, ``nradbase:
1e12``, ``rcut: 1e6``, a YAML alias bomb) or a nearly singular cell for billions of periodic
images. Each check here fails in milliseconds with the field named, before anything is
allocated. The bounds are far above any potential in use (pacemaker's largest bases use
lmax <= 6, nradmax <= 20, cutoffs <= 10 Å):

==========================  ==============  ==================================================
bound                       value           why
==========================  ==============  ==================================================
``MAX_LMAX``                20              the Clebsch-Gordan table stops at l = 12 anyway
``MAX_NRADMAX``             100             radial functions R_nl per l of a bond
``MAX_NRADBASE``            100             radial base functions g_k of a bond
``MAX_RANK``                6               correlation order (ace.basis.coupling)
``MAX_FUNCTIONS``           200,000         B-functions (or C-tilde functions) in one file
``MAX_CUTOFF``              25 Å            bond cutoff and a fit's ``cutoff``
``MAX_ABS_PARAMETER``       1e100           |coefficient|, |E0|, |crad|, embedding parameters
``MAX_FILE_BYTES``          256 MiB         potential file size (and regular files only)
``MAX_YAML_EXPANSION``      1,000,000       YAML nodes added by aliases (billion laughs)
``MAX_THREADS_PER_CORE``    8               OpenMP threads per available core
``MAX_PERIODIC_IMAGES``     1,000,000       periodic images a neighbour search visits
``MAX_IMAGE_ENTRIES``       50,000,000      atoms x images (≈ 72 bytes each in the search)
==========================  ==============  ==================================================
"""
from __future__ import annotations

import math
import os
import stat

import numpy as np
import yaml

MAX_LMAX = 20
MAX_NRADMAX = 100
MAX_NRADBASE = 100
MAX_RANK = 6
MAX_FUNCTIONS = 200_000
MAX_CUTOFF = 25.0  # Å
MAX_ABS_PARAMETER = 1e100
MAX_FILE_BYTES = 256 * 2**20
MAX_YAML_EXPANSION = 1_000_000
MAX_THREADS_PER_CORE = 8
MAX_PERIODIC_IMAGES = 1_000_000
MAX_IMAGE_ENTRIES = 50_000_000

# the integer bounds of a bond, by the names our files use
BOND_INTEGER_LIMITS = {"lmax": MAX_LMAX, "nradmax": MAX_NRADMAX, "nradbase": MAX_NRADBASE}


class LimitError(ValueError):
    """A size beyond a documented bound (see the module docstring)."""


def check_integer(value, limit, field, minimum=0, error=LimitError):
    """``value`` as an int in [minimum, limit]; raises ``error`` naming ``field`` otherwise."""
    if isinstance(value, bool):
        raise error(f"{field}: expected an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise error(f"{field}: expected an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        try:
            value = int(value)  # numpy integers
        except (TypeError, ValueError):
            raise error(f"{field}: expected an integer, got {value!r}") from None
    if value > limit:
        raise error(f"{field} = {value} is beyond the limit {limit} (see ace.limits)")
    if value < minimum:
        raise error(f"{field} must be >= {minimum}, got {value}")
    return value


def check_cutoff(value, field="cutoff", error=LimitError):
    """A positive, finite cutoff no larger than ``MAX_CUTOFF``."""
    if isinstance(value, bool):
        raise error(f"{field}: expected a number (Å), got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise error(f"{field}: expected a number (Å), got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise error(f"{field} must be a positive finite number (Å), got {value!r}")
    if value > MAX_CUTOFF:
        raise error(f"{field} = {value:g} Å is beyond the limit {MAX_CUTOFF:g} Å (see ace.limits)")
    return value


def largest_magnitude(values):
    """max |x| over a (nested) sequence or array of numbers; 0 when empty."""
    array = np.asarray(values, dtype=float)
    return float(np.abs(array).max(initial=0.0))


def check_magnitude(values, field, error=LimitError):
    """Refuse parameters larger than ``MAX_ABS_PARAMETER`` in magnitude (their sums overflow)."""
    biggest = largest_magnitude(values)
    if biggest > MAX_ABS_PARAMETER:
        raise error(f"{field}: |value| = {biggest:.3g} is beyond the limit {MAX_ABS_PARAMETER:g} "
                    "(see ace.limits)")


def check_num_threads(n_threads, available=None):
    """Refuse a thread count far above the cores (libgomp can abort the process when it cannot
    create the threads, and every thread gets its own scratch memory)."""
    available = available or os.cpu_count() or 1
    limit = MAX_THREADS_PER_CORE * available
    if n_threads > limit:
        raise ValueError(f"num_threads = {n_threads} is more than {MAX_THREADS_PER_CORE} per "
                         f"core (this machine has {available}; limit {limit})")
    return n_threads


def check_skin(skin):
    """The neighbour-list skin of the calculator: a finite number >= 0 (Å)."""
    if isinstance(skin, bool):
        raise ValueError(f"skin must be a number >= 0 (Å), got {skin!r}")
    try:
        value = float(skin)
    except (TypeError, ValueError):
        raise ValueError(f"skin must be a number >= 0 (Å), got {skin!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"skin must be a finite number >= 0 (Å), got {skin!r}")
    if value > MAX_CUTOFF:
        raise ValueError(f"skin = {value:g} Å is beyond the limit {MAX_CUTOFF:g} Å")
    return value


def check_periodic_images(reach, n_atoms, heights, cutoff, periodic):
    """Refuse a neighbour search over more periodic images than the limits allow.

    ``reach`` [3]: images needed on each side along each axis (float, may be huge or inf),
    ``heights`` [3]: the cell's heights (distance between opposite faces) along each axis.
    """
    n_images = math.prod(2.0 * r + 1.0 for r in reach)
    if n_images <= MAX_PERIODIC_IMAGES and n_images * n_atoms <= MAX_IMAGE_ENTRIES:
        return int(n_images)
    axes = [a for a in range(3) if periodic[a]]
    shortest = min(axes, key=lambda a: heights[a])
    raise ValueError(
        f"the cell is too thin for the cutoff {cutoff:g} Å: its shortest height is "
        f"{heights[shortest]:.3g} Å (along cell vector {shortest}), so the neighbour search "
        f"would need {n_images:.3g} periodic images for {n_atoms} atoms (limits: "
        f"{MAX_PERIODIC_IMAGES:,} images, {MAX_IMAGE_ENTRIES:,} atoms x images); is the cell "
        "nearly singular?")


# --------------------------------------------------------------------------- files and YAML

def read_text_file(path, error, what="potential file"):
    """The text of a regular, bounded, UTF-8 file; raises ``error`` naming the file."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file (a {what} must be one)")
    if info.st_size > MAX_FILE_BYTES:
        raise error(f"{path}: {info.st_size / 2**20:.0f} MiB is beyond the limit "
                    f"{MAX_FILE_BYTES // 2**20} MiB for a {what}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{path}: beyond the limit {MAX_FILE_BYTES // 2**20} MiB for a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise error(f"{path}: not UTF-8 text (byte {exc.start}, line {line}): not a {what}, "
                    "or a damaged one") from None


def _yaml_children(node):
    """The nodes a YAML node holds (keys and values of a mapping, items of a sequence)."""
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return ()


def yaml_load_bounded(text, loader_class, path, error):
    """Parse one YAML document with ``loader_class`` (a safe loader), refusing alias bombs.

    The document's node graph is composed first (aliases are shared nodes, so this is cheap);
    its size with every alias expanded is then counted without expanding it, and a document
    that aliases would grow by more than ``MAX_YAML_EXPANSION`` nodes, or that refers to
    itself, is refused before anything is constructed.
    """
    try:  # the pure-Python loaders check the characters here
        loader = loader_class(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {exc}") from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise error(f"{path}: invalid YAML: {exc}") from None
        except RecursionError:
            raise error(f"{path}: YAML nested too deeply") from None
        if node is None:
            return None
        distinct, expanded = _node_counts(node, path, error)
        if expanded - distinct > MAX_YAML_EXPANSION:
            raise error(f"{path}: YAML aliases expand the document to {expanded:.3g} nodes from "
                        f"{distinct} (limit: {MAX_YAML_EXPANSION:,} more); refusing an alias "
                        "bomb")
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise error(f"{path}: invalid YAML: {exc}") from None
        except RecursionError:
            raise error(f"{path}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _node_counts(root, path, error):
    """(distinct nodes, nodes with aliases expanded) of a composed YAML node graph."""
    expanded_size = {}  # id(node) -> size of its expanded subtree
    on_path = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _yaml_children(node)
            expanded_size[key] = min(1 + sum(expanded_size[id(c)] for c in children),
                                     1e300)
            continue
        if key in expanded_size:
            continue
        if key in on_path:
            raise error(f"{path}: a YAML alias refers to the node that contains it (recursive "
                        "document)")
        on_path.add(key)
        stack.append((node, True))
        children = _yaml_children(node)
        for child in children:
            if id(child) in on_path:
                raise error(f"{path}: a YAML alias refers to the node that contains it "
                            "(recursive document)")
            if id(child) not in expanded_size:
                stack.append((child, False))
    return len(expanded_size), expanded_size[id(root)]
