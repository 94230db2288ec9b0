"""The fit's passes over the data, chunk by chunk: in this process or on Dask workers.

The design rows of different structures are independent and their contributions to the normal
equations add, so the normal equations of a dataset are the sum of those of its chunks. A
:class:`ChunkedAssembly` (called like :func:`ace.fitting.linear.normal_equations`, passed to
``fit_linear(assemble=...)``) maps one task per chunk, each reading its chunk
(:func:`ace.stream.read_chunk`; workers read the files themselves) and returning the chunk's
per-fold :class:`NormalEquations` computed with the compiled core, and adds the results in the
order of the chunks: the sum, and so the fit, does not depend on which worker finished first
(the in-process engine and Dask give bitwise the same normal equations). The error tables
(:func:`chunked_error_table`) are sums over chunks the same way.

Engines (:func:`open_engine`, from ``fit: {engine, scheduler, workers, threads_per_worker}``):

* ``inprocess``: the chunks one after the other in this process (a streamed dataset's memory
  stays bounded by one chunk and the normal equations);
* ``dask``: :mod:`dask.distributed`, a ``LocalCluster`` of ``workers`` processes of
  ``threads_per_worker`` threads each (each task runs the compiled core on that many OpenMP
  threads), or the scheduler at ``scheduler`` (``tcp://host:port``) whose workers see the data
  files at the same paths. At most twice as many tasks as worker threads are in flight, so
  neither the workers nor the client hold more than a few chunks' results. A task whose worker
  dies is run again elsewhere (Dask's ``retries`` and its rescheduling of lost tasks).

Resume: with a checkpoint directory (``<output>.assembly/`` in ``ace fit``) the running sum of
the chunks done is saved there (npz, no pickle, written atomically) at most every
``checkpoint_seconds`` and when the pass ends, under a fingerprint of everything that
determines it (potential, chunks and files, weights, folds, E0, chunk rows, threads), so an
interrupted assembly started again continues after the chunks already added, with bitwise the
same result.

Dask is optional (``pip install "ace[dask]"``) and imported only when the dask engine is
opened.
"""
from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from ace.data import Dataset
from ace.fitting.linear import DEFAULT_CHUNK_ROWS, NormalEquations, normal_equations
from ace.fitting.metrics import add_error_sums, error_sums, predict, table_from_sums
from ace.potential import write_atomic
from ace.stream import DEFAULT_CHUNK_STRUCTURES, StreamedDataset, read_chunk
from ace.uncertainty.active_set import potential_fingerprint

ENGINES = ("inprocess", "dask")
DEFAULT_RETRIES = 3  # runs of a failed task beyond the first (dead workers are rescheduled too)
DEFAULT_CHECKPOINT_SECONDS = 30.0
CHECKPOINT_VERSION = 1


@dataclass
class EngineSettings:
    """Where the chunk tasks run (the ``fit`` keys engine, scheduler, workers,
    threads_per_worker; see the module doc)."""

    engine: str = "inprocess"
    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"fit.engine: expected one of {list(ENGINES)}, got {self.engine!r}")
        if self.scheduler is not None and not (
                isinstance(self.scheduler, str) and "://" in self.scheduler):
            raise ValueError(f"fit.scheduler: expected null (a LocalCluster on this machine) or "
                             f"an address such as 'tcp://host:8786', got {self.scheduler!r}")
        for name in ("workers", "threads_per_worker"):
            value = getattr(self, name)
            if value is None and name == "workers":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"fit.{name}: expected an integer >= 1, got {value!r}")
        if self.engine == "inprocess" and (self.scheduler is not None or self.workers is not None):
            raise ValueError("fit.scheduler and fit.workers apply to fit.engine: dask only")
        if self.scheduler is not None and self.workers is not None:
            raise ValueError("fit.workers: a scheduler's workers are started with it; give "
                             "fit.workers (a LocalCluster) or fit.scheduler, not both")


def open_engine(settings=None, client=None, log=None):
    """The engine of ``settings`` (an :class:`EngineSettings`); ``client``: a
    ``dask.distributed.Client`` to use (the dask engine, not closed with it)."""
    settings = settings or EngineSettings()
    if client is not None or settings.engine == "dask":
        return DaskEngine(settings, client=client, log=log)
    return InProcessEngine()


class InProcessEngine:
    """The tasks one after the other, in this process."""

    name = "inprocess"
    threads = None  # the core runs on the fit's num_threads

    def map(self, function, items, context=None):
        """``function(context, item)`` (or ``function(item)``) for each item, in order."""
        if context is None:
            return map(function, items)
        return (function(context, item) for item in items)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaskEngine:
    """Tasks on a Dask cluster: ``map`` yields the results in the order of the items."""

    name = "dask"

    def __init__(self, settings=None, client=None, retries=DEFAULT_RETRIES, log=None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("fit.engine dask needs dask.distributed: pip install "
                              "\"ace[dask]\" (or dask[distributed])") from None
        settings = settings or EngineSettings(engine="dask")
        self.retries = retries
        self._own = client is None
        self._cluster = None
        if client is not None:
            self.client = client
        elif settings.scheduler is not None:
            self.client = Client(settings.scheduler)
        else:
            self._cluster = LocalCluster(n_workers=settings.workers,
                                         threads_per_worker=settings.threads_per_worker,
                                         processes=True, dashboard_address=None)
            self.client = Client(self._cluster)
        self.threads = settings.threads_per_worker
        if log:
            workers = self.client.nthreads()
            log(f"dask: {len(workers)} worker(s), {sum(workers.values())} thread(s) "
                f"({self.client.scheduler.address})")

    def map(self, function, items, context=None):
        """``function(context, item)`` for each item on the workers, results in item order."""
        window = 2 * max(1, sum(self.client.nthreads().values()))
        items = iter(items)
        pending = collections.deque()
        # the context (the potential) goes to the cluster once, as the result of a task of
        # its own: sent with every task it would be kept once per task (53 kB per task with a
        # 12 kB potential, measured), and a task's result, unlike scattered data, is computed
        # again when the worker holding it dies
        shared = None if context is None else self.client.submit(_same, context, pure=False)

        def submit(item):
            args = (item,) if context is None else (shared, item)
            return self.client.submit(function, *args, pure=False, retries=self.retries)

        try:
            for item in itertools.islice(items, window):
                pending.append(submit(item))
            while pending:
                future = pending.popleft()
                result = future.result()
                future.release()
                for item in itertools.islice(items, 1):
                    pending.append(submit(item))
                yield result
        finally:
            for future in pending:
                future.cancel()
            if shared is not None:
                shared.release()

    def close(self):
        if self._own:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _same(value):
    return value


# ---------------------------------------------------------------------- the chunks

def chunk_sources(dataset, chunk_structures=DEFAULT_CHUNK_STRUCTURES):
    """(sources, starts): what each task reads (a :class:`ace.stream.Chunk`, or a subset of an
    in-memory :class:`Dataset`) and the index of each one's first structure."""
    if isinstance(dataset, StreamedDataset):
        return list(dataset.chunks), dataset.starts
    starts = np.append(np.arange(0, len(dataset), chunk_structures), len(dataset))
    return [dataset.subset(np.arange(a, b)) for a, b in zip(starts[:-1], starts[1:])], starts


def _load(source, keys):
    return source if isinstance(source, Dataset) else read_chunk(source, keys)


@dataclass
class _NormalEquationsTask:
    """What every chunk's task shares."""

    potential: object
    keys: object
    e0: object
    num_threads: int | None
    chunk_rows: int
    n_parts: int


def chunk_normal_equations(task, item):
    """The normal equations of one chunk: ``item`` = (source, weights, parts or None); a list
    of ``task.n_parts`` NormalEquations with parts, else one."""
    source, weights, parts = item
    data = _load(source, task.keys)
    result = normal_equations(task.potential, data, weights, task.e0, task.num_threads,
                              task.chunk_rows, parts=parts)
    if parts is None:
        return result
    nf, ne = task.potential.n_functions, result[0].n_e0
    return result + [NormalEquations({}, nf, ne) for _ in range(task.n_parts - len(result))]


def _add(total, result):
    if total is None:
        return result
    if isinstance(total, list):
        return [a + b for a, b in zip(total, result)]
    return total + result


class ChunkedAssembly:
    """Normal equations summed over chunks (module doc); call it as :func:`normal_equations`.

    ``engine``: an engine of :func:`open_engine` (default: in process). ``checkpoint_dir``:
    where the running sum is saved for resuming (None: not saved). After a call, ``stats``
    says how many chunks there were, how many were computed and how many resumed, the seconds
    and the bytes of one chunk's result (what a worker sends back)."""

    def __init__(self, engine=None, checkpoint_dir=None,
                 checkpoint_seconds=DEFAULT_CHECKPOINT_SECONDS,
                 chunk_structures=DEFAULT_CHUNK_STRUCTURES, log=None):
        self.engine = engine or InProcessEngine()
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_seconds = checkpoint_seconds
        self.chunk_structures = chunk_structures
        self.log = log
        self.stats = {}

    def __call__(self, potential, dataset, weights, e0=None, num_threads=None,
                 chunk_rows=DEFAULT_CHUNK_ROWS, progress=None, parts=None):
        start = time.perf_counter()
        dataset.check_elements(potential.elements)
        sources, starts = chunk_sources(dataset, self.chunk_structures)
        n_parts = 1 if parts is None else int(np.max(parts)) + 1
        threads = self.engine.threads if self.engine.threads is not None else num_threads
        e0 = None if e0 is None else np.asarray(e0, dtype=float)
        task = _NormalEquationsTask(potential, getattr(dataset, "keys", None), e0, threads,
                                    chunk_rows, n_parts)
        items = [(source, np.asarray(weights[a:b], dtype=float),
                  None if parts is None else np.asarray(parts[a:b]))
                 for source, a, b in zip(sources, starts[:-1], starts[1:])]
        path = None
        done, total = 0, None
        if self.checkpoint_dir is not None:
            key = self._fingerprint(task, dataset, weights, parts)
            path = os.path.join(self.checkpoint_dir, f"normal-equations-{key[:20]}.npz")
            done, total = _read_checkpoint(path, key, len(items), self.log)
        results = self.engine.map(chunk_normal_equations, items[done:], task)
        if progress is not None:
            results = progress(results, "design rows (chunks)")
        saved = time.perf_counter()
        result_bytes = 0
        for k, result in enumerate(results, start=done + 1):
            result_bytes = max(result_bytes, _nbytes(result))
            total = _add(total, result)
            if path and (k == len(items)
                         or time.perf_counter() - saved >= self.checkpoint_seconds):
                _write_checkpoint(path, key, k, total)
                saved = time.perf_counter()
        self.stats = {"chunks": len(items), "computed": len(items) - done, "resumed": done,
                      "seconds": time.perf_counter() - start, "result_bytes": result_bytes,
                      "engine": self.engine.name}
        return total

    def _fingerprint(self, task, dataset, weights, parts):
        h = hashlib.sha256()
        h.update(json.dumps({"version": CHECKPOINT_VERSION,
                             "potential": potential_fingerprint(task.potential),
                             "keys": asdict(task.keys) if task.keys else None,
                             "threads": task.num_threads, "chunk_rows": task.chunk_rows,
                             "n_parts": task.n_parts,
                             "chunk_structures": self.chunk_structures}).encode())
        for array in (weights, parts, task.e0):
            if array is not None:
                h.update(np.ascontiguousarray(array).tobytes())
        if isinstance(dataset, StreamedDataset):
            for chunk in dataset.chunks:
                info = os.stat(chunk.path.partition("@")[0])
                h.update(json.dumps([asdict(chunk), info.st_size, info.st_mtime_ns]).encode())
        else:
            for array in (dataset.numbers, dataset.positions, dataset.cells, dataset.energy,
                          dataset.forces, dataset.stress):
                h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()


def _nbytes(result):
    items = result if isinstance(result, list) else [result]
    return sum(v.nbytes if isinstance(v, np.ndarray) else 8
               for neq in items for d in neq.terms.values() for v in d.values())


def _write_checkpoint(path, key, done, total):
    """The running sum after ``done`` chunks, as npz (no pickle), replacing the file
    atomically."""
    parts = total if isinstance(total, list) else [total]
    arrays = {"fingerprint": np.array(key), "done": np.array(done),
              "n_parts": np.array(len(parts) if isinstance(total, list) else 0),
              "n_functions": np.array(parts[0].n_functions), "n_e0": np.array(parts[0].n_e0)}
    for p, neq in enumerate(parts):
        for term, d in neq.terms.items():
            for name, value in d.items():
                arrays[f"{p}/{term}/{name}"] = np.asarray(value)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def _read_checkpoint(path, key, n_chunks, log=None):
    """(chunks done, their sum) from ``path`` when it belongs to this pass, else (0, None)."""
    if not os.path.exists(path):
        return 0, None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["fingerprint"]) != key:
                return 0, None
            done, n_parts = int(f["done"]), int(f["n_parts"])
            nf, ne = int(f["n_functions"]), int(f["n_e0"])
            parts = [NormalEquations({}, nf, ne) for _ in range(max(n_parts, 1))]
            for name in f.files:
                if name.count("/") != 2:
                    continue
                p, term, field = name.split("/")
                value = f[name]
                parts[int(p)].terms.setdefault(term, {})[field] = (
                    value if value.ndim else value.item())
    except (OSError, ValueError, KeyError) as exc:
        if log:
            log(f"{path}: not resumed ({type(exc).__name__}: {exc}); assembling from the start")
        return 0, None
    if not 0 < done <= n_chunks:
        return 0, None
    if log:
        log(f"normal equations: resumed from {path} ({done} of {n_chunks} chunks done)")
    return done, parts if n_parts else parts[0]


# ---------------------------------------------------------------------- error tables

@dataclass
class _ErrorTask:
    potential: object
    keys: object
    num_threads: int | None


def chunk_error_sums(task, source):
    """The error sums (:func:`ace.fitting.metrics.error_sums`) of one chunk."""
    data = _load(source, task.keys)
    return error_sums(data, predict(task.potential, data, task.num_threads))


def chunked_error_table(potential, dataset, engine=None, num_threads=None, progress=None,
                        chunk_structures=DEFAULT_CHUNK_STRUCTURES):
    """The error table of ``potential`` on ``dataset`` (streamed or in memory), from sums over
    its chunks added in chunk order."""
    engine = engine or InProcessEngine()
    sources, _ = chunk_sources(dataset, chunk_structures)
    threads = engine.threads if engine.threads is not None else num_threads
    results = engine.map(chunk_error_sums, sources,
                         _ErrorTask(potential, getattr(dataset, "keys", None), threads))
    if progress is not None:
        results = progress(results, "evaluate (chunks)")
    total = None
    for sums in results:
        total = sums if total is None else add_error_sums(total, sums)
    return table_from_sums(total)


def summarise(engine):
    """A ``map`` for :meth:`ace.stream.StreamedDataset.open` running on ``engine``."""
    def run(function, items):
        return engine.map(function, items)

    return run
