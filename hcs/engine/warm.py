"""The imports a worker of the embedded cluster needs, made once by its forkserver.

:func:`hcs.engine.cluster.start_cluster` starts the workers of its ``LocalCluster`` from a
forkserver (on Linux) whose preload list is :mod:`hcs.engine._warm_base` (which imports
:data:`BASE`, torch included), plus :mod:`hcs.engine._warm_torch` (:data:`TORCH`: torchvision,
timm) when the run's model or detector is a torch model; this module itself imports neither.
The forkserver imports them once, before any thread or GPU is used, and every worker is forked
from it with them already imported, instead of importing them itself (~5 CPU s per worker with
torch and timm).

A module that fails to import here is skipped: the worker imports it again when it needs it,
and the run reports that error as it would without a forkserver.

Examples
--------
>>> from hcs.engine.warm import BASE, warm
>>> "hcs.engine.tasks" in BASE
True
>>> warm(["hcs.no_such_module", "json"])
['json']
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable

__all__ = ["BASE", "TORCH", "warm"]

#: What every worker imports before its first field (the field path: read, detect, measure,
#: compose, crop, write; torch, which every processor imports to set its threads and device;
#: the last name imports a module scikit-image loads lazily).
BASE: tuple[str, ...] = (
    "distributed", "torch", "numpy", "pandas", "pyarrow.parquet", "pyarrow.pandas_compat", "xarray",
    "dask.array", "scipy.ndimage", "scipy.fft", "zarr", "skimage.measure",
    "skimage.segmentation", "skimage.morphology", "skimage.filters", "hcs.engine",
    "hcs.engine.tasks", "hcs.engine.processor", "hcs.engine.detector", "hcs.engine.imageqc",
    "hcs.engine.labels", "hcs.engine.batching", "hcs.detect.threshold", "hcs.measure",
    "hcs.io.omezarr", "hcs.assays.registry", "hcs.classify.crops", "hcs.classify.infer",
    "skimage.segmentation._watershed",
)

#: What a worker running a CNN (or a learned detector) imports on top: the torch model
#: libraries (timm imports torchvision, which imports ``torch._dynamo``).
TORCH: tuple[str, ...] = ("torchvision", "timm", "hcs.classify.models", "hcs.classify.smallcnn")


def warm(names: Iterable[str]) -> list[str]:
    """Import ``names``, skipping any that fails (for any reason); the ones imported.

    Parameters
    ----------
    names
        Module names.

    Returns
    -------
    list of str
        The names that imported.
    """
    done = []
    for name in names:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
            done.append(name)
    return done
