"""Streamed datasets and the chunked (Dask) passes of the fit: the same data, weights, folds and
normal equations as the in-memory fit; Dask's sums equal the in-process ones bitwise; a worker
killed mid-fit and an interrupted assembly change nothing."""
import os
import subprocess
import sys
import textwrap

import ase.db
import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from conftest import package_env

from ace.basis import build_basis
from ace.data import read_dataset
from ace.fitting.config import ConfigError, FitConfig
from ace.fitting.distributed import (ChunkedAssembly, DaskEngine, InProcessEngine,
                                     chunked_error_table)
from ace.fitting.linear import (LossSettings, fit_linear, fold_indices, normal_equations,
                                structure_weights)
from ace.fitting.metrics import evaluate
from ace.potential import ACEPotential
from ace.stream import StreamedDataset, plan_chunks

CHUNK = 5  # structures per chunk: every dataset below has several chunks
CUTOFF = 4.5


def emt_structures(n, seed=0):
    """Rattled, strained fcc/bcc/sc Cu-Ni cells of 4-8 atoms labelled by EMT; every 11th a
    single Cu or Ni atom in a large box (an isolated atom)."""
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        if k % 11 == 10:
            atoms = bulk(("Cu", "Ni")[k // 11 % 2], "sc", a=10.0 + 0.1 * k)
            atoms.info["config_type"] = "isolated"
        else:
            kind = ("fcc", "bcc", "sc")[k % 3]
            a0 = {"fcc": 3.6, "bcc": 2.87, "sc": 2.4}[kind]
            atoms = bulk("Cu", kind, a=a0 * (1 + 0.04 * rng.normal()), cubic=True)
            atoms = atoms.repeat((2, 1, 1) if kind == "fcc" else (2, 2, 1))
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * rng.normal(size=(3, 3))),
                           scale_atoms=True)
            atoms.rattle(0.15, seed=k)
            symbols = atoms.get_chemical_symbols()
            symbols[0] = "Ni"
            atoms.set_chemical_symbols(symbols)
            atoms.info["config_type"] = kind
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_forces()
        if k % 4:
            atoms.get_stress()
        images.append(atoms)
    return images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three extended XYZ files (36 structures) and an ASE database of 9."""
    root = tmp_path_factory.mktemp("stream")
    images = emt_structures(45)
    paths = []
    for k, (a, b) in enumerate(((0, 14), (14, 22), (22, 36))):
        paths.append(str(root / f"part{k}.xyz"))
        ase.io.write(paths[-1], images[a:b])
    with ase.db.connect(str(root / "more.db")) as db:
        for atoms in images[36:]:
            db.write(atoms, config_type=atoms.info["config_type"])
    return root, paths, str(root / "more.db")


@pytest.fixture(scope="module")
def potential():
    spec = {"elements": ["Cu", "Ni"],
            "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                   "fs_parameters": [1, 1]}},
            "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [2.0], "rcut": CUTOFF,
                              "dcut": 0.01}},
            "functions": {"ALL": {"nradmax_by_orders": [5, 2, 1], "lmax_by_orders": [0, 2, 1]}}}
    return ACEPotential.from_basis(build_basis(spec))


def relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def assert_normal_equations_close(a, b, rtol):
    assert set(a.terms) == set(b.terms) and a.n_e0 == b.n_e0
    for t in a.terms:
        for k in ("gram", "rhs", "yy", "weight"):
            assert relative(np.asarray(a.terms[t][k]), np.asarray(b.terms[t][k])) <= rtol, (t, k)
        assert a.terms[t]["rows"] == b.terms[t]["rows"]


def assert_normal_equations_equal(a, b):
    assert set(a.terms) == set(b.terms)
    for t in a.terms:
        for k, value in a.terms[t].items():
            assert np.array_equal(value, b.terms[t][k]), (t, k)


# ---------------------------------------------------------------------- streamed data

@pytest.mark.parametrize("which", ["files", "glob", "db", "slice"])
def test_streamed_dataset_matches_read_dataset(files, which):
    """Chunks hold the structures read_dataset reads, named alike; the per-structure numbers
    give the same weights, folds, counts and shortest pairs, without the structures in memory."""
    root, paths, db = files
    sources = {"files": paths, "glob": str(root / "part*.xyz"), "db": db,
               "slice": paths[0] + "@3:12"}[which]
    memory = read_dataset(sources, warn_duplicates=False)
    streamed = StreamedDataset.open(sources, chunk_structures=CHUNK, cutoff=CUTOFF)
    assert len(streamed.chunks) > 1 and len(streamed) == len(memory)
    assert list(streamed.names) == memory.names
    settings = LossSettings(energy_kT=0.2, config_type={"fcc": 2.0})
    assert np.array_equal(structure_weights(streamed, settings, ["Cu", "Ni"]),
                          structure_weights(memory, settings, ["Cu", "Ni"]))
    assert np.array_equal(fold_indices(streamed, 5, seed=3), fold_indices(memory, 5, seed=3))
    assert np.array_equal(streamed.split_indices(0.2, 1)[1], memory.split_indices(0.2, 1)[1])
    assert np.array_equal(streamed.counts(["Cu", "Ni"]), memory.counts(["Cu", "Ni"]))
    assert np.array_equal(streamed.has_stress, memory.has_stress)
    from ace.data import shortest_pairs
    assert np.array_equal(shortest_pairs(streamed, CUTOFF).distance,
                          shortest_pairs(memory, CUTOFF).distance)
    for k in range(len(streamed.chunks)):
        part = streamed.chunk(k)
        whole = memory.subset(np.arange(streamed.starts[k], streamed.starts[k + 1]))
        assert part.names == whole.names
        for field in ("numbers", "positions", "cells", "energy", "forces", "stress"):
            assert np.array_equal(getattr(part, field), getattr(whole, field), equal_nan=True)
    if which != "slice":
        elements = ["Ni"] if which == "db" else ["Cu", "Ni"]
        assert streamed.isolated_atom_energies(elements, CUTOFF) == \
            memory.isolated_atom_energies(elements, CUTOFF)
    # one structure at a time (what the active set reads), through the chunk it is in
    s = len(streamed) - 2
    assert np.array_equal(streamed.atoms(s).positions, memory.atoms(s).positions)


def test_streamed_dataset_errors_name_the_file(files, tmp_path):
    root, paths, _ = files
    broken = tmp_path / "broken.xyz"
    text = open(paths[0]).read().splitlines()
    text[0] = "seven"
    broken.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match="broken.xyz:0: expected the number of atoms"):
        plan_chunks(str(broken))
    with pytest.raises(ValueError, match="chunk_structures"):
        plan_chunks(paths, 0)
    streamed = StreamedDataset.open(paths[0], chunk_structures=CHUNK)
    with pytest.raises(ValueError, match=r"part0.xyz:\d+: element\(s\) \['Ni'\] are not in"):
        streamed.check_elements(["Cu"])


def test_streamed_fit_equals_in_memory_fit(files, potential):
    """A streamed dataset of many chunks: the same normal equations (to round-off), the same
    chosen weights and regularisation, the same coefficients and error tables."""
    _, paths, db = files
    sources = paths + [db]
    memory = read_dataset(sources, warn_duplicates=False)
    streamed = StreamedDataset.open(sources, chunk_structures=CHUNK, cutoff=CUTOFF)
    weights = structure_weights(memory, LossSettings(), potential.elements)
    parts = fold_indices(memory, 5)
    expected = normal_equations(potential, memory, weights, num_threads=1, parts=parts)
    got = ChunkedAssembly()(potential, streamed, weights, num_threads=1, parts=parts)
    for a, b in zip(got, expected):
        assert_normal_equations_close(a, b, 1e-12)

    settings = LossSettings(e0="isolated")
    fit_memory = fit_linear(potential, memory, settings, num_threads=1)
    assembly = ChunkedAssembly()
    fit_streamed = fit_linear(potential, streamed, settings, num_threads=1, assemble=assembly)
    assert assembly.stats["chunks"] == len(streamed.chunks) > 3
    for key in ("l2", "weights", "rank", "e0"):
        assert fit_streamed.report[key] == fit_memory.report[key], key
    tolerance = 100 * fit_memory.report["condition"] ** 2 * np.finfo(float).eps
    assert relative(fit_streamed.potential.coefficients, fit_memory.potential.coefficients) \
        <= max(tolerance, 1e-12)
    table = chunked_error_table(fit_memory.potential, streamed, num_threads=1)
    reference = evaluate(fit_memory.potential, memory, num_threads=1)
    assert table["by_config_type"].keys() == reference["by_config_type"].keys()
    for name, row in [("overall", table["overall"])] + list(table["by_config_type"].items()):
        ref = reference["overall"] if name == "overall" else reference["by_config_type"][name]
        for key, value in row.items():
            assert value == pytest.approx(ref[key], rel=1e-12, abs=1e-15), (name, key)


def test_resume_reuses_finished_chunks(files, potential, tmp_path):
    """An assembly interrupted after 3 chunks continues from the saved sum (npz) with the
    chunks after them only, and ends with bitwise the same normal equations."""
    _, paths, _ = files
    streamed = StreamedDataset.open(paths, chunk_structures=CHUNK)
    weights = structure_weights(streamed, LossSettings(), potential.elements)
    parts = fold_indices(streamed, 3)
    whole = ChunkedAssembly()(potential, streamed, weights, num_threads=1, parts=parts)

    def interrupt_after(n):
        def progress(results, description):
            for k, result in enumerate(results):
                if k == n:
                    raise KeyboardInterrupt
                yield result
        return progress

    checkpoint = tmp_path / "fit.assembly"
    first = ChunkedAssembly(checkpoint_dir=str(checkpoint), checkpoint_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        first(potential, streamed, weights, num_threads=1, parts=parts,
              progress=interrupt_after(3))
    saved = list(checkpoint.iterdir())
    assert len(saved) == 1 and saved[0].suffix == ".npz"
    with np.load(saved[0], allow_pickle=False) as f:  # plain arrays, no pickled objects
        assert int(f["done"]) == 3
    messages = []
    again = ChunkedAssembly(checkpoint_dir=str(checkpoint), checkpoint_seconds=0,
                            log=messages.append)
    resumed = again(potential, streamed, weights, num_threads=1, parts=parts)
    n = len(streamed.chunks)
    assert again.stats["resumed"] == 3 and again.stats["computed"] == n - 3
    assert any(f"3 of {n} chunks done" in m for m in messages)
    for a, b in zip(resumed, whole):
        assert_normal_equations_equal(a, b)
    # other weights: another pass, the saved sum is not used
    other = ChunkedAssembly(checkpoint_dir=str(checkpoint), checkpoint_seconds=0)
    other(potential, streamed, 2 * weights, num_threads=1, parts=parts)
    assert other.stats["resumed"] == 0


# ---------------------------------------------------------------------- Dask

def test_dask_normal_equations_equal_in_process(files, potential):
    """Two Dask workers: bitwise the in-process chunked sums (added in chunk order whatever
    finishes first), and the in-memory normal equations to 1e-12."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    _, paths, db = files
    streamed = StreamedDataset.open(paths + [db], chunk_structures=CHUNK)
    memory = read_dataset(paths + [db], warn_duplicates=False)
    weights = structure_weights(streamed, LossSettings(), potential.elements)
    parts = fold_indices(streamed, 4)
    in_process = ChunkedAssembly()(potential, streamed, weights, num_threads=1, parts=parts)
    expected = normal_equations(potential, memory, weights, num_threads=1, parts=parts)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        engine = DaskEngine(client=client)
        assembly = ChunkedAssembly(engine)
        got = assembly(potential, streamed, weights, parts=parts)
        assert assembly.stats["engine"] == "dask"
        table = chunked_error_table(potential, streamed, engine)
        # an in-memory dataset: its chunks are sent to the workers
        got_memory = ChunkedAssembly(engine, chunk_structures=7)(
            potential, memory, weights, parts=parts)
    for a, b, c, d in zip(got, in_process, expected, got_memory):
        assert_normal_equations_equal(a, b)
        assert_normal_equations_close(a, c, 1e-12)
        assert_normal_equations_close(d, c, 1e-12)
    assert table == chunked_error_table(potential, streamed)


def test_fit_survives_a_killed_worker(files, potential, tmp_path):
    """The first chunk task kills its worker process; Dask runs it again on a worker that
    lives and the fit ends with bitwise the result of a fit without the kill."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster, WorkerPlugin

    marker = str(tmp_path / "killed")

    class KillOnce(WorkerPlugin):
        """Exits the worker process as the first chunk task starts (once: a marker file)."""

        def __init__(self, path):
            self.path = path

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and "chunk_normal_equations" in str(key) \
                    and not os.path.exists(self.path):
                open(self.path, "w").close()
                os._exit(1)

    _, paths, _ = files
    streamed = StreamedDataset.open(paths, chunk_structures=CHUNK)
    settings = LossSettings(folds=3)
    expected = fit_linear(potential, streamed, settings, num_threads=1,
                          assemble=ChunkedAssembly())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(KillOnce(marker))
        fit = fit_linear(potential, streamed, settings,
                         assemble=ChunkedAssembly(DaskEngine(client=client)))
    assert os.path.exists(marker)  # a worker did die
    assert np.array_equal(fit.potential.coefficients, expected.potential.coefficients)
    assert fit.report["l2"] == expected.report["l2"]


def test_ace_fit_on_a_scheduler(files, tmp_path):
    """`ace fit --scheduler ADDRESS`: the fit runs on that cluster, streamed, and gives the
    potential of the in-process streamed fit; the assembly checkpoint is gone afterwards."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    from ace.cli import main

    _, paths, _ = files
    config = {"elements": ["Cu", "Ni"], "cutoff": CUTOFF,
              "data": {"train": paths, "stream": True, "chunk_structures": CHUNK},
              "basis": {"functions": {"number_of_functions_per_element": 12}},
              "regularisation": {"folds": 3},
              "fit": {"num_threads": 1, "progress": False, "committee": 0,
                      "active_set": None}}
    import yaml
    for name in ("local", "dask"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {**config, "output": str(tmp_path / f"{name}-potential.yaml")}))
    assert main(["fit", str(tmp_path / "local.yaml"), "--no-validate"]) == 0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        assert main(["fit", str(tmp_path / "dask.yaml"), "--no-validate",
                     "--scheduler", cluster.scheduler_address]) == 0
    local = ACEPotential.load(str(tmp_path / "local-potential.yaml"))
    dask_fit = ACEPotential.load(str(tmp_path / "dask-potential.yaml"))
    assert np.array_equal(local.coefficients, dask_fit.coefficients)
    assert dask_fit.metadata["fit"]["config"]["engine"]["scheduler"] == \
        cluster.scheduler_address
    assert not (tmp_path / "dask-potential.assembly").exists()


# ---------------------------------------------------------------------- configuration

@pytest.mark.parametrize("fit, data, message", [
    ({"engine": "spark"}, {}, "fit.engine: expected one of"),
    ({"engine": "dask", "workers": 0}, {}, "fit.workers: expected an integer >= 1"),
    ({"engine": "dask", "threads_per_worker": 1.5}, {}, "fit.threads_per_worker"),
    ({"engine": "dask", "scheduler": "myhost"}, {}, "fit.scheduler: expected null"),
    ({"engine": "dask", "scheduler": "tcp://h:1", "workers": 2}, {}, "not both"),
    ({"workers": 2}, {}, "apply to fit.engine: dask only"),
    ({"engine": "dask"}, {"stream": False}, "data.stream: false, but fit.engine dask"),
    ({}, {"stream": "yes"}, "data.stream: expected true or false"),
    ({}, {"stream": True, "chunk_structures": 0}, "data.chunk_structures: expected an"),
    ({"method": "nonlinear"}, {"stream": True}, "fit.method nonlinear does not run on"),
])
def test_config_keys_are_validated(fit, data, message):
    raw = {"elements": ["Cu"], "cutoff": 4.0, "output": "x.yaml",
           "data": {"train": "x.xyz", **data}, "fit": fit}
    with pytest.raises(ConfigError, match=message):
        FitConfig.from_dict(raw)


def test_config_defaults_and_scheduler_override():
    raw = {"elements": ["Cu"], "cutoff": 4.0, "output": "x.yaml", "data": {"train": "x.xyz"}}
    config = FitConfig.from_dict(raw)
    assert not config.stream and config.engine.engine == "inprocess"
    dask = FitConfig.from_dict({**raw, "fit": {"engine": "dask", "workers": 2}})
    assert dask.stream and dask.engine.workers == 2
    moved = config.with_scheduler("tcp://10.0.0.1:8786")
    assert moved.stream and moved.engine.engine == "dask" and not config.stream
    with pytest.raises(ConfigError, match="--scheduler"):
        config.with_scheduler("10.0.0.1")


def test_streamed_fit_without_dask(files, tmp_path):
    """With dask missing the package imports, a streamed fit runs in process, and the dask
    engine says how to install it."""
    _, paths, _ = files
    script = textwrap.dedent(f"""
        import sys
        sys.modules["dask"] = sys.modules["distributed"] = None  # as if not installed
        import ace
        config = {{"elements": ["Cu", "Ni"], "cutoff": {CUTOFF}, "output": "p.yaml",
                   "data": {{"train": {paths!r}, "stream": True, "chunk_structures": 4}},
                   "basis": {{"functions": {{"number_of_functions_per_element": 8}}}},
                   "fit": {{"num_threads": 1, "progress": False, "committee": 0}}}}
        result = ace.fit(config, validate=False)
        assert result.tables["train"]["overall"]["n_structures"] == 36
        config["fit"]["engine"] = "dask"
        try:
            ace.fit(config, validate=False)
        except ImportError as exc:
            print("refused:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=package_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'refused: fit.engine dask needs dask.distributed: pip install "ace[dask]"' \
        in out.stdout


def test_engines_map_in_order():
    engine = InProcessEngine()
    assert list(engine.map(lambda c, x: c * x, [1, 2, 3], 10)) == [10, 20, 30]
