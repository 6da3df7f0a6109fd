"""Forkserver preload: import :data:`hcs.engine.warm.TORCH` (see :mod:`hcs.engine.warm`)."""

from hcs.engine.warm import TORCH, warm

warm(TORCH)
