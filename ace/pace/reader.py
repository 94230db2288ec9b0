"""The YAML reader of PACE files: a safe loader, typed field access with errors naming the file
and the place, the format sniffed from the content, and the pieces both importers share."""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import yaml
from ase.data import atomic_numbers

from ace.basis.model import EMBEDDINGS, INNER_CUTOFF_TYPES, RADIAL_FAMILIES, BFunction
from ace.limits import BOND_INTEGER_LIMITS, check_integer, read_text_file, yaml_load_bounded
from ace.pace.common import PaceCompatibilityWarning, PaceFormatError, pace_differences
from ace.potential import ACEPotential, PotentialFileError

# Radial-basis names PACE files may carry, mapped to ours; TEST_SBessel is PACE's alias.
RADIAL_NAMES = {"SBessel": "SBessel", "TEST_SBessel": "SBessel", "ChebExpCos": "ChebExpCos",
                "ChebPow": "ChebPow"}

# Largest integer any field of a PACE file holds (indices, counts, m's); beyond, int() overflows.
INTEGER_FIELD_LIMIT = 2**31 - 1

try:  # the C loader is much faster on large files; both are "safe" variants
    _BaseSafeLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _BaseSafeLoader = yaml.SafeLoader


class PaceLoader(_BaseSafeLoader):
    """The safe loader, plus flow-sequence mapping keys (``[0, 1]:`` in .yace bonds) as tuples
    and an error on duplicated keys. Constructs only plain data (no Python objects)."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping",
                                                    node.start_mark)
        self.flatten_mapping(node)
        mapping = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.SequenceNode):
                key = tuple(self.construct_sequence(key_node, deep=True))
            else:
                key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found an unhashable key", key_node.start_mark) from None
            if key in mapping:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


# YAML 1.1 reads the plain word No (nobelium) as false, and pacemaker's metadata starttime
# ("2024-01-02 03:04:05.678") as a datetime: here only true/false are booleans, and
# timestamps stay strings.
PaceLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in _BaseSafeLoader.yaml_implicit_resolvers.items()}
PaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class Reader:
    """Typed access to parsed YAML with errors naming the file and the place."""

    def __init__(self, path):
        self.path = path

    def error(self, where, message):
        return PaceFormatError(f"{self.path}: {where}: {message}")

    def get(self, data, key, where, default=KeyError):
        if not isinstance(data, dict):
            raise self.error(where, f"expected a mapping, got {type(data).__name__}")
        if key not in data or data[key] is None:
            if default is KeyError:
                raise self.error(where, f"missing key '{key}'")
            return default
        return data[key]

    def number(self, value, where, integer=False):
        if isinstance(value, bool):
            raise self.error(where, f"expected a number, got {value!r}")
        if isinstance(value, str):  # PyYAML reads e.g. '1e-05' (no dot) as a string
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                raise self.error(where, f"expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise self.error(where, f"expected a number, got {value!r}")
        if integer:
            if isinstance(value, float) and not value.is_integer():
                raise self.error(where, f"expected an integer, got {value!r}")
            if abs(value) > INTEGER_FIELD_LIMIT:  # no field holds more; huge ones overflow
                digits = str(int(value))
                shown = digits if len(digits) <= 24 else f"of {len(digits)} digits"
                raise self.error(where, f"integer {shown} is out of range")
            return int(value)
        value = float(value)
        if not math.isfinite(value):
            raise self.error(where, f"non-finite number {value}")
        return value

    def numbers(self, value, where, integer=False, length=None):
        if not isinstance(value, list):
            raise self.error(where, f"expected a list, got {value!r}")
        if integer and all(type(v) is int for v in value):
            out = value  # the common cases first: already numbers of the right kind
        elif not integer and all(type(v) in (float, int) for v in value):
            out = [float(v) for v in value]
            if not all(math.isfinite(v) for v in out):
                raise self.error(where, "contains NaN or inf")
        else:
            out = [self.number(v, f"{where}[{i}]", integer) for i, v in enumerate(value)]
        if integer and out and max(abs(min(out)), abs(max(out))) > INTEGER_FIELD_LIMIT:
            raise self.error(where, "holds an integer out of range")
        if length is not None and len(out) != length:
            raise self.error(where, f"expected {length} values, got {len(out)}")
        return out

    def array(self, value, shape, where):
        try:
            arr = np.array(value, dtype=float)
        except (TypeError, ValueError):
            raise self.error(where, "not a regular numeric array (ragged or non-numeric)") from None
        if arr.size == 0 and 0 in shape:
            return np.zeros(shape)
        if arr.shape != tuple(shape):
            raise self.error(where, f"has shape {arr.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(arr)):
            raise self.error(where, "contains NaN or inf")
        return arr

    def sizes(self, where, **values):
        """Bond sizes (lmax, nradmax, nradbase) within ace.limits, before anything is sized by
        them."""
        for key, value in values.items():
            check_integer(value, BOND_INTEGER_LIMITS[key], f"{where}: {key}",
                          error=self.error_in_file)

    def error_in_file(self, message):
        return PaceFormatError(f"{self.path}: {message}")

    def word(self, value, where):
        if not isinstance(value, str):
            raise self.error(where, f"expected a string, got {value!r}")
        return value


def sniff(path):
    """('yaml' or 'yace', parsed data) from the content; the old text .ace format is refused."""
    text = read_text_file(path, PaceFormatError)  # regular, bounded, UTF-8
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("nelements"):
        raise PaceFormatError(f"{path}: the old PACE text format (.ace) is not supported; convert "
                              f"it to .yace with python-ace (ACECTildeBasisSet(path)"
                              f".save_yaml(...)) or use the pacemaker .yaml")
    try:  # aliases bounded: a billion-laughs file fails before it is expanded
        data = yaml_load_bounded(text, PaceLoader, path, PaceFormatError)
    except PaceFormatError as exc:
        if "invalid YAML" in str(exc):
            raise PaceFormatError(f"{exc} (truncated or hand-broken file?)") from None
        raise
    if not isinstance(data, dict):
        raise PaceFormatError(f"{path}: not a PACE potential (the file does not hold a mapping)")
    if "format_version" in data or (isinstance(data.get("bonds"), list) and "e0" in data):
        raise PaceFormatError(f"{path}: an ace potential file without its first line "
                              f"'# ace-potential sha256=...' and its 'format: ace-potential' "
                              f"line: it was edited or damaged; save it again from ace")
    if "species" in data or "global" in data:
        return "yaml", data
    if {"elements", "E0", "bonds", "embeddings", "functions"} & set(data):
        return "yace", data
    raise PaceFormatError(f"{path}: not a PACE potential (neither a B-basis .yaml with "
                          f"'species' nor a C-tilde .yace with 'elements', 'bonds' and "
                          f"'functions')")


def read_radial_name(rd, name, where):
    name = rd.word(name, where)
    if name in RADIAL_NAMES:
        return RADIAL_NAMES[name]
    if name.startswith("ACE.jl"):
        raise rd.error(where, f"radial basis {name!r} (ACE.jl / ACEpotentials.jl export) is not "
                              f"supported; only PACE's {', '.join(RADIAL_FAMILIES)}")
    raise rd.error(where, f"radial basis {name!r} is not supported (supported: "
                          f"{', '.join(RADIAL_FAMILIES)})")


def _one_of(rd, value, where, allowed, what):
    value = rd.word(value, where)
    if value not in allowed:
        raise rd.error(where, f"{what} {value!r} is not supported (supported: "
                              f"{', '.join(allowed)})")
    return value


def read_inner_cutoff_type(rd, value, where):
    return _one_of(rd, value, where, INNER_CUTOFF_TYPES, "inner_cutoff_type")


def read_embedding_name(rd, value, where):
    return _one_of(rd, value, where, EMBEDDINGS, "embedding")


def read_element_list(rd, names, where):
    for name in names:
        if name not in atomic_numbers or name == "X":
            raise rd.error(where, f"{name!r} is not a chemical element")
    if len(set(names)) != len(names):
        raise rd.error(where, f"duplicated elements in {names}")
    return names


def finish_potential(rd, pot_args, metadata):
    try:
        pot = ACEPotential(*pot_args, metadata=metadata)
    except PotentialFileError as exc:
        raise PaceFormatError(f"{rd.path}: {exc}") from None
    for message in pace_differences(pot):
        warnings.warn(f"{rd.path}: {message}; energies and forces can differ from PACE there",
                      PaceCompatibilityWarning, stacklevel=3)
    return pot


def merged_functions(functions, coefficients):
    """Merge duplicates (coefficients add up: exact) and sort by central element."""
    merged = {}
    for f, c in zip(functions, coefficients):
        key = (f.mu0, f.rank, f.mus, f.ns, f.ls, f.LS)
        merged[key] = merged[key] + c if key in merged else np.array(c, dtype=float)
    keys = sorted(merged)
    return [BFunction(k[0], k[2], k[3], k[4], k[5]) for k in keys], [merged[k] for k in keys]


def coefficient_matrix(coefficients, ndmax):
    out = np.zeros((len(coefficients), ndmax))
    for k, c in enumerate(coefficients):
        out[k, :len(c)] = c
    return out
