"""Load the model on a worker while the cluster is still starting (a Dask worker preload).

:func:`hcs.engine.cluster.start_cluster` with ``preload_params`` starts every worker of the
embedded ``LocalCluster`` with ``preload=["hcs.engine.preload"]`` and
``preload_argv=["--params", <EngineParams JSON>]``. Dask calls :func:`dask_setup` as soon as the
worker process has started, before it registers with the scheduler; it starts one background
thread that imports torch and builds the worker's processor through
:func:`hcs.engine.processor.get_processor`, i.e. into the same per-process cache, under the same
lock, that every task uses. So:

- the model loads while the other workers, the scheduler and the main process still start;
- a task (or the run's warm-up) that asks for the processor while the thread builds it waits on
  that lock and gets the thread's processor: the model is loaded once per worker;
- a failed load caches nothing; :func:`wait` re-raises the thread's exception (the run's
  warm-up turns it into one :class:`~hcs.errors.InputError`), and a later ``get_processor``
  tries again (and fails again with the same error).

This module is imported by every worker at start-up: it imports nothing heavy itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click

__all__ = ["PRELOAD_MODULE", "dask_setup", "preload_status", "start", "wait", "wait_all"]

#: What :func:`hcs.engine.cluster.start_cluster` passes as the workers' ``preload``.
PRELOAD_MODULE = "hcs.engine.preload"


@dataclass
class _Load:
    """One background load of a processor (key: the parameters' JSON)."""

    key: str
    thread: threading.Thread | None = None
    error: BaseException | None = None
    seconds: float | None = None  # None while the load runs
    started: float = field(default_factory=time.perf_counter)


_LOADS: dict[str, _Load] = {}
_LOADS_LOCK = threading.Lock()


def _load(load: _Load, worker: Any) -> None:
    t0 = time.perf_counter()
    try:
        if worker is not None:
            try:  # as in a task: get_worker() names this worker (device "auto" picks its GPU)
                from distributed.worker import _worker_cvar

                _worker_cvar.set(worker)  # this thread's own context only
            except ImportError:  # pragma: no cover - a distributed without it: CPU or GPU 0
                pass
        from hcs.engine.processor import EngineParams, get_processor

        get_processor(EngineParams.model_validate_json(load.key))
    except BaseException as exc:  # kept for wait(): a worker thread has no one to raise to
        load.error = exc
    finally:
        load.seconds = time.perf_counter() - t0


def start(params_json: str, worker: Any = None) -> None:
    """Build the processor of ``params_json`` (:class:`~hcs.engine.processor.EngineParams` as
    JSON) in a background thread, once per process and parameters.

    Parameters
    ----------
    params_json
        ``EngineParams.model_dump_json()`` of the run.
    worker
        The Dask worker (so that ``get_worker()`` works while the processor is built), or None.
    """
    with _LOADS_LOCK:
        if params_json in _LOADS:
            return
        load = _LOADS[params_json] = _Load(params_json)
        load.thread = threading.Thread(target=_load, args=(load, worker), daemon=True,
                                       name="hcs-preload")
        load.thread.start()


def wait(params_json: str, timeout: float | None = None) -> float | None:
    """Wait for the background load of ``params_json`` and re-raise its exception.

    Parameters
    ----------
    params_json
        The parameters given to :func:`start`.
    timeout
        Seconds to wait at most (None: until the load ends).

    Returns
    -------
    float or None
        Seconds the load took, None when no load of these parameters was started here.

    Raises
    ------
    TimeoutError
        The load still runs after ``timeout`` seconds.
    BaseException
        Whatever the load raised (:class:`~hcs.errors.InputError` for an unreadable model).
    """
    with _LOADS_LOCK:
        load = _LOADS.get(params_json)
    if load is None or load.thread is None:
        return None
    load.thread.join(timeout)
    if load.thread.is_alive():
        raise TimeoutError(f"the model is still loading after {timeout} s")
    if load.error is not None:
        raise load.error
    return load.seconds


def wait_all(timeout: float | None = None) -> int:
    """Wait (at most ``timeout`` seconds in all) for every background load of this process to
    end, whatever its outcome; the number still running. A worker closed while it loads
    torch answers its heartbeats late and logs errors: the cluster waits for this first."""
    deadline = None if timeout is None else time.perf_counter() + timeout
    with _LOADS_LOCK:
        loads = list(_LOADS.values())
    for ld in loads:
        if ld.thread is not None:
            ld.thread.join(None if deadline is None else max(deadline - time.perf_counter(), 0))
    return sum(1 for ld in loads if ld.thread is not None and ld.thread.is_alive())


def preload_status() -> list[dict[str, Any]]:
    """The background loads of this process: ``running``, ``error`` (text or None) and
    ``seconds`` each (for tests and diagnostics, e.g. through ``client.run``)."""
    with _LOADS_LOCK:
        loads = list(_LOADS.values())
    return [{"key": ld.key, "running": ld.seconds is None,
             "error": None if ld.error is None else f"{type(ld.error).__name__}: {ld.error}",
             "seconds": ld.seconds} for ld in loads]


@click.command()
@click.option("--params", "params_json", required=True, help="EngineParams JSON.")
def dask_setup(worker: Any, params_json: str) -> None:
    """Dask's preload hook: start loading the processor of ``params_json`` on ``worker``."""
    start(params_json, worker)
