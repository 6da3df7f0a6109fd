"""Forkserver preload: import :data:`hcs.engine.warm.BASE` (see :mod:`hcs.engine.warm`)."""

from hcs.engine.warm import BASE, warm

warm(BASE)
