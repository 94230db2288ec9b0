"""pacemaker's datasets: pandas DataFrames pickled to ``*.pckl.gzip``.

``pace_collect`` writes one row per structure with the columns ``ase_atoms`` (ASE Atoms),
``energy`` (total energy, eV), ``energy_corrected`` (the energy minus the free-atom energies of
its atoms, what pacemaker fits), ``forces`` ([n_atoms, 3] eV/Å) and optionally ``stress`` or
``virial``, ``name`` and pacemaker's weights ``w_energy``/``w_forces``;
``fitting_data_info.pckl.gzip`` and ``test_data_info.pckl.gzip``, which pacemaker writes when
it fits, have the same columns.

Each row becomes ASE Atoms whose stored calculator results are the total energy (``energy``, or
``energy_corrected`` when the frame has no total energies) and the forces; the other scalar
columns (``energy_corrected``, ``name``, ``config_type``, ``w_energy``, ...) go into ``info``,
as do ``stress`` (ASE's convention and units, eV/Å³) and ``virial`` (eV), where
:class:`ace.data.DataKeys` can select them (``energy: energy_corrected`` fits the corrected
energies).

A pickle runs code of the writer's choosing when it is loaded, so :func:`read_images` refuses
to open one unless ``trust_pickle`` is true: the user's explicit word that the file is theirs
or from a source they trust. ``ace convert-data X.pckl.gzip -o X.xyz --trust-pickle`` turns
one into extended XYZ once (:func:`convert_to_xyz`), after which no trust is needed. pandas is needed to unpickle a
DataFrame: ``pip install 'ace[pacemaker]'``.
"""
from __future__ import annotations

import gzip
import os
import tempfile
import warnings

import ase.io

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

PICKLE_SUFFIXES = (".pckl.gzip", ".pckl.gz", ".pkl.gzip", ".pkl.gz", ".pckl", ".pkl", ".pickle")
GZIP_MAGIC = b"\x1f\x8b"
PICKLE_PROTOCOL_BYTE = 0x80  # first byte of every pickle of protocol 2 and later
ATOMS_COLUMN = "ase_atoms"
ARRAY_INFO_COLUMNS = ("stress", "virial")  # per-structure arrays kept in info
SKIPPED_COLUMNS = (ATOMS_COLUMN, "forces", "w_forces", "atomic_env", "tp_atoms", "energy")


class PickleTrustError(ValueError):
    """A pickle that was not declared trusted."""


def is_pickle(path):
    """Whether ``path`` is a (gzipped) pickle: by its suffix, else by its first bytes."""
    path = os.fspath(path)
    if path.lower().endswith(PICKLE_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            if head == GZIP_MAGIC:
                fh.seek(0)
                with gzip.GzipFile(fileobj=fh) as inner:
                    head = inner.read(1)
    except (OSError, EOFError):
        return False
    return bool(head) and head[0] == PICKLE_PROTOCOL_BYTE


def trust_message(path):
    """Why ``path`` is not read and how to read it."""
    stem = os.path.basename(os.fspath(path))
    for suffix in PICKLE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    return (f"{path}: a pickle (pacemaker's pandas DataFrame format); loading a pickle can run "
            f"any code it holds, so ace reads one only when told it is trusted: add "
            f"--trust-pickle (ace fit, ace convert-data) or `data: {{trust_pickle: true}}` to "
            f"the config, or convert it once: ace convert-data {path} -o {stem}.xyz "
            f"--trust-pickle")


def check_trust(path, trust_pickle):
    """Raise :class:`PickleTrustError` if ``path`` is a pickle and ``trust_pickle`` is false."""
    if not trust_pickle and os.path.isfile(path) and is_pickle(path):
        raise PickleTrustError(trust_message(path))


def read_dataframe(path, trust_pickle=False):
    """The pandas DataFrame pickled in ``path`` (gzip or not), read only when trusted."""
    path = os.fspath(path)
    if not trust_pickle:
        raise PickleTrustError(trust_message(path))
    try:
        import pandas
    except ImportError:
        raise ValueError(f"{path}: reading pacemaker's pickled DataFrames needs pandas: "
                         "pip install 'ace[pacemaker]' (or pip install pandas)") from None
    with open(path, "rb") as fh:
        compression = "gzip" if fh.read(2) == GZIP_MAGIC else None
    try:
        frame = pandas.read_pickle(path, compression=compression)
    except Exception as exc:  # unpickling raises anything the pickle's classes raise
        raise ValueError(f"{path}: cannot read the pickle: {type(exc).__name__}: {exc}") from exc
    if not isinstance(frame, pandas.DataFrame):
        raise ValueError(f"{path}: the pickle holds a {type(frame).__name__}, not a pandas "
                         "DataFrame")
    if ATOMS_COLUMN not in frame.columns:
        raise ValueError(f"{path}: no '{ATOMS_COLUMN}' column (columns: {list(frame.columns)}); "
                         "pacemaker's datasets have one Atoms object per row there")
    if "energy" not in frame.columns and "energy_corrected" not in frame.columns:
        raise ValueError(f"{path}: neither an 'energy' nor an 'energy_corrected' column "
                         f"(columns: {list(frame.columns)})")
    return frame


def read_images(path, index=None, trust_pickle=False):
    """Yield ``(name, atoms)`` for the rows of a pacemaker DataFrame pickle (names
    ``file:row``); ``index`` an ASE-style selection (``":100"``, ``"-1"``)."""
    from ase.io.formats import string2index

    frame = read_dataframe(path, trust_pickle)
    rows = range(len(frame))
    if index:
        selection = string2index(index)
        rows = rows[selection] if isinstance(selection, slice) else [rows[selection]]
    energy_column = "energy"
    if "energy" not in frame.columns or not np.isfinite(
            np.asarray(frame["energy"], dtype=float)).all():
        energy_column = "energy_corrected"
        warnings.warn(f"{path}: no total energies (column 'energy'); the labels are pacemaker's "
                      "energy_corrected (energy minus the free-atom energies), so the fitted E0 "
                      "and the potential's energies are relative to the free atoms",
                      stacklevel=2)
    for k in rows:
        row = frame.iloc[k]
        yield f"{path}:{k}", _atoms(row, energy_column, f"{path}:{k}")


def _atoms(row, energy_column, name):
    from ase import Atoms

    atoms = row[ATOMS_COLUMN]
    if not isinstance(atoms, Atoms):
        raise ValueError(f"{name}: '{ATOMS_COLUMN}' holds a {type(atoms).__name__}, not ASE Atoms")
    atoms = atoms.copy()
    atoms.calc = None
    results = {"energy": float(row[energy_column])}
    forces = row.get("forces")
    if forces is not None and not _is_missing(forces):
        results["forces"] = np.asarray(forces, dtype=float).reshape(len(atoms), 3)
    for column, value in row.items():
        if column in SKIPPED_COLUMNS or _is_missing(value):
            continue
        if column in ARRAY_INFO_COLUMNS:
            atoms.info[column] = np.asarray(value, dtype=float).reshape(-1)
        elif isinstance(value, (str, int, float, np.integer, np.floating)) and \
                not isinstance(value, (bool, np.bool_)):
            atoms.info[str(column)] = value.item() if isinstance(value, np.generic) else value
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return not np.isfinite(value)
    return False


def convert_to_xyz(source, target, trust_pickle=False):
    """Write the structures of the pacemaker DataFrame pickle ``source`` to ``target`` as
    extended XYZ (atomically): the energy (the total energy, or energy_corrected when the
    frame has no total energies), the forces, and as info keys energy_corrected, name,
    config_type, stress/virial and the other scalar columns. Read only with ``trust_pickle``.
    Returns the structures written."""
    images = [atoms for _, atoms in read_images(source, trust_pickle=trust_pickle)]
    if not images:
        raise ValueError(f"{source}: no structures")
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".xyz", dir=directory)
    os.close(fd)
    try:
        ase.io.write(tmp, images, format="extxyz")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return images
