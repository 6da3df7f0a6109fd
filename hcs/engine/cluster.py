"""Where the work runs: an embedded LocalCluster, or an existing Dask scheduler.

GPUs are a Dask *resource*: each GPU worker advertises ``GPU=1`` and every field task (which
runs the model) asks for one, so a worker never runs two inferences on its GPU at once. With no
GPU everything runs on plain CPU workers. ``dask-cuda``'s ``LocalCUDACluster`` (one worker per
GPU, each pinned with ``CUDA_VISIBLE_DEVICES``) is used for ``--gpus`` > 1 when installed.

Start-up: the workers of the embedded ``LocalCluster`` load the model while the cluster starts
(``preload_params``, :mod:`hcs.engine.preload`), and :class:`PendingCluster` starts the cluster in
a background thread while the main process still checks the run (:func:`hcs.engine.run.plan_run`).
On Linux its workers are forked from a forkserver that has imported their libraries (and torch
for a CNN) once (:mod:`hcs.engine.warm`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from hcs.errors import InputError

__all__ = ["ClusterHandle", "PendingCluster", "count_gpus", "describe_cluster",
           "no_cuda_device_nodes", "start_cluster"]


def count_gpus() -> int:
    """CUDA devices visible to this process (0 without torch or without a GPU).

    On a Linux machine with no NVIDIA device node (``/dev/nvidia0``, ...; ``/dev/dxg`` under
    WSL 2) CUDA cannot see a device: 0 without importing torch (~2 CPU s), so that the main
    process of ``hcs run --gpus auto`` on a CPU-only machine never imports it. Elsewhere torch
    answers.
    """
    if no_cuda_device_nodes():
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def no_cuda_device_nodes(dev: Path = Path("/dev")) -> bool:
    """True on Linux when ``dev`` holds no NVIDIA GPU device (``nvidia0``, ``nvidia1``, ...)
    and no WSL 2 GPU (``dxg``): a CUDA runtime can reach no GPU then. False elsewhere (unknown).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> no_cuda_device_nodes(d) == sys.platform.startswith("linux")
    True
    >>> (d / "nvidia0").touch()
    >>> no_cuda_device_nodes(d)
    False
    """
    if not sys.platform.startswith("linux"):
        return False
    return not (dev / "dxg").exists() and not any(dev.glob("nvidia[0-9]*"))


def resolve_gpus(gpus: str | int) -> int:
    """``auto`` -> :func:`count_gpus`; a number is checked against what is visible.

    Examples
    --------
    >>> resolve_gpus("0")
    0
    """
    if str(gpus).strip().lower() == "auto":
        return count_gpus()
    try:
        n = int(gpus)
    except ValueError:
        raise InputError(f"--gpus must be auto or a number, got {gpus!r}") from None
    if n < 0:
        raise InputError(f"--gpus must be >= 0, got {n}")
    if n and n > count_gpus():
        raise InputError(f"--gpus {n}: only {count_gpus()} CUDA device(s) visible here")
    return n


@dataclass
class ClusterHandle:
    """A connected client, the cluster it owns (None for an external scheduler), the resources
    field tasks must ask for, and a JSON description for ``run.json``."""

    client: Any
    cluster: Any | None
    resources: dict[str, float] | None
    description: dict[str, Any] = field(default_factory=dict)
    threads_per_worker: int = 1
    preload: bool = False  # the workers load the model at start (hcs.engine.preload)
    closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Close the client and the cluster it owns (once; later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.cluster is not None and self.cluster.status.name == "running":
                # a worker's heartbeat in flight while the scheduler closes logs a traceback
                # ("Failed to communicate with scheduler during heartbeat"): stop them first
                # (a lambda travels by value; a function of this module would make each
                # worker import it first, ~0.7 s)
                with contextlib.suppress(Exception):
                    self.client.sync(self.client._run,
                                     lambda dask_worker: dask_worker.periodic_callbacks[
                                         "heartbeat"].stop(),
                                     on_error="ignore", callback_timeout=5)
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def start_cluster(
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    gpus: str | int = "auto",
    preload_params: str | None = None,
) -> ClusterHandle:
    """Connect to ``scheduler`` or start a LocalCluster sized to this machine.

    Parameters
    ----------
    workers
        Worker processes of the embedded cluster (default: CPUs // threads_per_worker, or one
        per GPU with GPUs). Ignored with ``scheduler``.
    threads_per_worker
        Threads per worker process (also torch's intra-op threads).
    scheduler
        Address of an existing scheduler (``tcp://host:8786``); its workers are used as they
        are (start GPU workers with ``--resources GPU=1``).
    gpus
        ``auto``, ``0`` (CPU only) or the number of GPUs to use.
    preload_params
        ``EngineParams.model_dump_json()``: every worker of an embedded ``LocalCluster`` starts
        building its processor as soon as its process starts (:mod:`hcs.engine.preload`;
        ``handle.preload`` is then True). Ignored with ``scheduler`` (its workers exist
        already) and with ``LocalCUDACluster``.
    """
    from distributed import Client, LocalCluster

    if threads_per_worker < 1:
        raise InputError(f"--threads-per-worker must be >= 1, got {threads_per_worker}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        info = client.scheduler_info()
        n_gpu_workers = sum(1 for w in info["workers"].values()
                            if w.get("resources", {}).get("GPU", 0) >= 1)
        want = str(gpus).strip().lower()
        if want not in ("auto", "0") and n_gpu_workers == 0:
            client.close()
            raise InputError(f"--gpus {gpus}: no worker of {scheduler} offers a GPU resource "
                             f"(start them with `dask worker ... --resources GPU=1`)")
        use_gpu = n_gpu_workers > 0 and want != "0"
        handle = ClusterHandle(client, None, {"GPU": 1} if use_gpu else None,
                               threads_per_worker=threads_per_worker)
        handle.description = describe_cluster(client, "external", scheduler)
        return handle

    n_gpus = resolve_gpus(gpus)
    cpus = os.cpu_count() or 1
    if workers is None:
        workers = n_gpus or max(1, cpus // threads_per_worker)
    mem = int(psutil.virtual_memory().total / workers)
    kind = "LocalCluster"
    extra: dict[str, Any] = {}  # LocalCluster's preload arguments
    if n_gpus > 1:
        try:
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(n_workers=n_gpus, threads_per_worker=threads_per_worker,
                                       resources={"GPU": 1}, memory_limit=mem)
            kind = "LocalCUDACluster"
        except ImportError:
            cluster = None
    else:
        cluster = None
    if cluster is None:
        import dask

        resources = {"GPU": 1} if n_gpus else None
        if preload_params:
            extra = _preload_kwargs(preload_params)
        # a field that kills its worker (out of memory) is given up after one retry, not three;
        # no MALLOC_TRIM_THRESHOLD_ (Dask's default 65536 for workers): setting it turns off
        # glibc's adaptive mmap threshold, so every large array is a fresh mmap, and a field
        # took 1.35x the CPU for the same peak RSS (docs/scaling.md "Start-up")
        settings: dict[str, Any] = {
            "distributed.scheduler.allowed-failures": 1,
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
        if _forkserver(warm_modules(preload_params)):
            settings["distributed.worker.multiprocessing-method"] = "forkserver"
            # a forked worker has the forkserver's environment: give it this process's, as a
            # spawned one has it (but for what Dask sets before it spawns a worker)
            pre = set(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
            extra["env"] = {k: v for k, v in os.environ.items()
                            if k not in pre and k != "PYTHONHASHSEED"}
        with dask.config.set(settings):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                   processes=True, memory_limit=mem, resources=resources,
                                   dashboard_address=None, **extra,
                                   # the scheduler's HTTP routes (no dashboard) on a free port:
                                   # no "Port 8787 is already in use" warning in the output
                                   scheduler_kwargs={"dashboard_address": ":0"})
    client = Client(cluster)
    handle = ClusterHandle(client, cluster, {"GPU": 1} if n_gpus else None,
                           threads_per_worker=threads_per_worker, preload="preload" in extra)
    handle.description = describe_cluster(client, kind, None)
    handle.description["gpus"] = n_gpus
    return handle


def warm_modules(params_json: str | None) -> list[str]:
    """The forkserver preload modules for a run with these parameters (``EngineParams`` JSON;
    None: the field path without a model): :mod:`hcs.engine._warm_base`, and
    :mod:`hcs.engine._warm_torch` (torchvision, timm) when the model is a CNN (or an ensemble
    of them) or the detector a learned one; a features model with the classical detector needs
    neither (torch itself every worker imports, it is in the base).
    """
    mods = ["hcs.engine._warm_base"]
    if not params_json:
        return mods
    from hcs.engine.processor import EngineParams

    params = EngineParams.model_validate_json(params_json)
    torch = Path(params.detector).is_absolute()  # a learned detector: a folder's absolute path
    if params.model is not None and not torch:
        from hcs.engine.model import model_card

        try:
            card = model_card(params.model)[1]
        except InputError:  # the run reports it; nothing to warm for it
            card = None
        torch = card is not None and getattr(card, "kind", "cnn") != "features"
    return mods + ["hcs.engine._warm_torch"] if torch else mods


#: True once this process has set its forkserver's preload list (the first cluster's).
_FORKSERVER_SET = False


def _forkserver(warm: list[str]) -> bool:
    """Start the embedded cluster's workers from a forkserver that imports ``warm`` once
    (Linux only, and only when Dask's start method is its default ``spawn``; True then).

    A spawned worker is a new interpreter that imports numpy, pandas, zarr, scikit-image,
    distributed, torch and, for a CNN, timm (~5.4 CPU s and ~2 s of wall time per worker on
    a 2-core machine; timm imports torchvision, which imports ``torch._dynamo``). A forked
    worker has them already: the forkserver imports them once, before any thread or GPU is
    used, and every worker starts as a copy of it. The forkserver lives as long as this process;
    its first cluster decides what it imports. It is stopped and waited for at exit, so that
    its CPU time (and its workers') counts as this process's children's.
    """
    global _FORKSERVER_SET
    import dask

    if not sys.platform.startswith("linux"):
        return False
    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") != "spawn":
        return False  # the user chose a start method: keep it
    if not _FORKSERVER_SET:
        from distributed.utils import get_mp_context

        with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
            ctx = get_mp_context()  # distributed sets its own preload list here, once
        ctx.set_forkserver_preload(warm)
        _FORKSERVER_SET = True
        import atexit

        atexit.register(_stop_forkserver)
    return True


def _stop_forkserver() -> None:
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)  # Python >= 3.8; private
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


def _preload_kwargs(params_json: str) -> dict[str, Any]:
    """LocalCluster's ``preload``/``preload_argv``: the worker preloads of the Dask config (if
    any) followed by :mod:`hcs.engine.preload` with ``--params params_json``."""
    import dask

    from hcs.engine.preload import PRELOAD_MODULE

    preload = dask.config.get("distributed.worker.preload") or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    argv = list(dask.config.get("distributed.worker.preload-argv") or [])
    if not argv or isinstance(argv[0], str):  # one argv for every configured preload
        argv = [argv] * len(preload)
    return {"preload": preload + [PRELOAD_MODULE],
            "preload_argv": argv + [["--params", params_json]]}


class PendingCluster:
    """:func:`start_cluster` running in a background thread, so that the cluster (and, with
    ``preload_params``, the model on its workers) starts while this process goes on.

    Parameters
    ----------
    **kwargs
        :func:`start_cluster`'s arguments.

    Examples
    --------
    >>> pending = PendingCluster(workers=1, gpus=0)  # doctest: +SKIP
    >>> handle = pending.result()  # doctest: +SKIP
    >>> pending.close()  # doctest: +SKIP
    """

    def __init__(self, **kwargs: Any) -> None:
        # import Dask here, not in the thread: its config defaults are then in place before
        # this process's own dask.config.set blocks (one that creates the "distributed" key
        # while the thread imports distributed would delete all its defaults on exit)
        import distributed  # noqa: F401

        self.started = time.perf_counter()
        self.ready: float | None = None  # perf_counter when the start ended (None: running)
        self._closed = False
        pool = ThreadPoolExecutor(1, thread_name_prefix="hcs-cluster-start")
        self._future: Future[ClusterHandle] = pool.submit(self._start, kwargs)
        pool.shutdown(wait=False)

    def _start(self, kwargs: dict[str, Any]) -> ClusterHandle:
        try:
            return start_cluster(**kwargs)
        finally:
            self.ready = time.perf_counter()

    def result(self) -> ClusterHandle:
        """The started cluster (waits for the start to end; re-raises its error)."""
        if self._closed:
            raise RuntimeError("the pending cluster was closed")
        return self._future.result()

    def close(self) -> None:
        """Close the cluster: waits for its start to end first (a process being spawned cannot
        be stopped half way), then closes it; a failed start has nothing to close. Once."""
        if self._closed:
            return
        self._closed = True
        try:
            handle = self._future.result()
        except BaseException:  # noqa: BLE001 - the start failed: nothing was left running
            return
        if handle.preload and not handle.closed:
            # workers still importing torch answer late and log tracebacks when closed now
            from hcs.engine.preload import wait_all

            try:
                handle.client.run(wait_all, 60)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        handle.close()


def _sum_resources(workers: Any) -> dict[str, float]:
    total: dict[str, float] = {}
    for w in workers:
        for k, v in (w.get("resources") or {}).items():
            total[k] = total.get(k, 0) + float(v)
    return total


def describe_cluster(client: Any, kind: str, address: str | None) -> dict[str, Any]:
    """Workers, threads, memory and resources of a connected cluster (for ``run.json``)."""
    info = client.scheduler_info()
    ws = info.get("workers", {})
    return {
        "kind": kind,
        "scheduler": address or info.get("address"),
        "workers": len(ws),
        "threads": sum(int(w.get("nthreads", 0)) for w in ws.values()),
        "memory_limit_bytes": sum(int(w.get("memory_limit") or 0) for w in ws.values()),
        "resources": _sum_resources(ws.values()),
        "host_cpus": os.cpu_count(),
    }
