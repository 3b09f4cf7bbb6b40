"""Run blockwise segmentation on dask.distributed: a LocalCluster or any existing cluster.

:class:`ClusterExecutor` plugs into :func:`napari_organelle.blockwise.segment_blockwise_iter`:
each block is one task (``client.submit``), results are taken as they complete,
and the plan (image reference, statistics, targets) and the model are sent to
every worker once (``client.scatter(..., broadcast=True)``). A model given by
name or folder is loaded once per worker process and kept
(:func:`napari_organelle.blockwise.cached_predictor`), so workers never reload it
per block.

Workers read the image from, and write the labels to, the OME-Zarr folders
themselves: on a cluster of several machines both must be on a file system
every worker sees (the same path). A cluster is anything dask reaches by
address: ``LocalCluster``, ``dask-jobqueue`` (SLURM, PBS), ``dask-kubernetes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import InputError


def default_workers(cores: int | None = None, memory_bytes: int | None = None,
                    per_worker_bytes: int = 2 << 30) -> tuple[int, int]:
    """Workers and cores per worker for this machine.

    One worker per 4 cores (each runs a network with several threads), at least
    one, and no more than fit in memory at ``per_worker_bytes`` each.

    Examples:
        >>> default_workers(16, 64 << 30)
        (4, 4)
        >>> default_workers(2, 64 << 30)
        (1, 2)
        >>> default_workers(32, 4 << 30)
        (2, 16)
    """
    cores = cores or os.cpu_count() or 1
    workers = max(1, cores // 4)
    if memory_bytes:
        workers = max(1, min(workers, memory_bytes // per_worker_bytes))
    return int(workers), max(1, cores // workers)


def thread_environment(network_threads: int) -> dict[str, str]:
    """Environment of a worker process whose network runs on ``network_threads`` threads.

    dask's nannies start workers with ``OMP_NUM_THREADS=1`` (its
    ``distributed.nanny.pre-spawn-environ``), which would run PyTorch and ONNX
    Runtime on one thread per worker whatever its cores: measured, a 4096 x 4096
    image took 27.7 s on a 2-core worker against 15.4 s in this process.

    Examples:
        >>> thread_environment(4)["OMP_NUM_THREADS"]
        '4'
    """
    value = str(max(1, int(network_threads)))
    return {name: value for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS")}


def _memory() -> int | None:
    from .inference import _available_memory

    return _available_memory()


class ClusterExecutor:
    """Runs blockwise tasks on a ``distributed.Client``.

    Args:
        client: a connected client.
        on_close: called when the run ends (closes a cluster this module started).
    """

    def __init__(self, client: Any, on_close: Callable[[], None] | None = None) -> None:
        self.client = client
        self._on_close = on_close
        self._pending: list[Any] = []
        #: threads of each block's network on a LocalCluster this module started
        self.network_threads: int | None = None

    @property
    def dashboard(self) -> str | None:
        return getattr(self.client, "dashboard_link", None)

    def share(self, value: Any) -> Any:
        """Send a value to every worker once; a string (a model name) is sent as is."""
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        return self.client.scatter(value, broadcast=True, hash=False)

    def map_unordered(self, function: Callable[..., Any], items: Sequence[Any],
                      *shared: Any) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed

        futures = {}
        for item in items:
            future = self.client.submit(function, *shared, item, pure=False)
            futures[future] = item
        self._pending = list(futures)
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            self.client.cancel([f for f in futures if not f.done()])
            self._pending = []

    def close(self) -> None:
        if self._pending:
            self.client.cancel(self._pending)
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def connect(scheduler: str | None = None, workers: int | None = None,
            threads: int | None = None, processes: bool = True,
            dashboard: bool = True) -> ClusterExecutor:
    """A :class:`ClusterExecutor` on an existing cluster, or on a new LocalCluster.

    Args:
        scheduler: a scheduler address (``tcp://host:8786``) or a scheduler file
            (JSON, as dask-jobqueue and ``dask scheduler --scheduler-file`` write);
            None: start a LocalCluster on this machine.
        workers: LocalCluster worker processes (default: :func:`default_workers`).
        threads: blocks each LocalCluster worker segments at once (dask threads,
            default 1); the worker's cores are shared among them, so the network of
            each block runs on ``cores per worker // threads`` threads. An existing
            cluster's workers use the threads their environment gives
            (``OMP_NUM_THREADS``, 1 under a dask nanny unless set).
        processes: LocalCluster workers are processes (True) or threads of this one.
        dashboard: serve the dask dashboard (LocalCluster; its address is
            :attr:`ClusterExecutor.dashboard`).

    Raises:
        InputError: ``distributed`` is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency
        raise InputError("dask.distributed is not installed: pip install distributed") from None
    if scheduler:
        try:
            if os.path.isfile(scheduler):
                client = Client(scheduler_file=scheduler, timeout="20s")
            else:
                client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise InputError(f"cannot reach the dask scheduler at {scheduler}: {error}") from None
        return ClusterExecutor(client, on_close=client.close)
    default_n, default_cores = default_workers(memory_bytes=_memory())
    n = workers or default_n
    cores = default_cores if workers is None else max(1, (os.cpu_count() or 1) // n)
    slots = max(1, threads or 1)
    options: dict[str, Any] = {}
    if processes:
        options["env"] = thread_environment(cores // slots)
    cluster = LocalCluster(n_workers=n, threads_per_worker=slots, processes=processes,
                           dashboard_address=":0" if dashboard else None,
                           silence_logs=40, **options)
    client = Client(cluster)

    def close() -> None:
        client.close()
        cluster.close()

    executor = ClusterExecutor(client, on_close=close)
    executor.network_threads = max(1, cores // slots)
    return executor
