"""Cross-field batching: crops of consecutive fields share inference batches.

A task that processes a group of fields detects them one after the other and feeds their crops
to :class:`FieldBatcher`, which runs the classifier on full batches of ``batch_size`` crops taken
in (field, ``cell_id``) order, whichever fields they come from, and hands back each field as soon
as all its crops are classified (so its table can be written at once). Only the last batch of a
group is partial, instead of the last batch of every field: on a GPU that is what keeps the
device busy with large batches when fields hold a few hundred cells.

Memory: a waiting field keeps its composed ``(H, W, C)`` input, not its crops; crops exist one
batch at a time, and a field's composed input is dropped as soon as its last crop is cut. A task
therefore holds the fields whose crops do not yet fill a batch plus the current one (one or two
fields with the default batch of 64 and a few hundred cells per field), whatever the group size.

Every forward pass has exactly ``batch_size`` crops: the last, partial batch of a task is padded
with blank crops whose outputs are dropped. That costs at most ``batch_size - 1`` crops of
inference per task and keeps a worker's memory flat: torch/oneDNN keep compiled kernels per
input shape (about 1 MB each for lcnet_050, measured), so with a partial batch of every size
from 1 to ``batch_size - 1`` a worker's resident memory crept up with the fields it ran. One
shape means one set of kernels (and, on a GPU, no re-tuning per shape).

Results: in eval mode a crop's probabilities do not depend on its batch neighbours
mathematically, but numerically the GEMM/convolution kernels may round a crop differently at
another position in the batch (measured on CPU with the test ResNet: up to ~1e-7 in
probability; lcnet_050 gave identical bits). A field's table is therefore the same, within float
tolerance and with the same labels except for a cell exactly on a decision boundary, whether its
crops were batched alone or with other fields (tested). Groups depend only on the list of fields,
so 1 or N workers still give identical bits; a resumed run re-forms its groups from the fields
left, so it matches an uninterrupted run within float tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FieldBatcher"]


class FieldBatcher:
    """Batches the crops of prepared fields across field boundaries.

    Parameters
    ----------
    processor
        Has ``crops(prepared, start, stop)`` and ``classify(crops) -> probabilities``.
    batch_size
        Crops per forward pass.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> class Sum:  # "classifier": the crop's value, as one probability column
    ...     def crops(self, p, a, b): return p.values[a:b]
    ...     def classify(self, x): return x[:, None].astype(np.float32)
    >>> def field(v): return NS(values=np.array(v), n=len(v), cut=0, done=0, composed=1,
    ...                         probs=np.zeros((len(v), 1), np.float32))
    >>> b = FieldBatcher(Sum(), batch_size=2)
    >>> f1, f2 = field([1, 2, 3]), field([4, 5])
    >>> b.add(f1)  # batch [1, 2] runs; crop 3 waits for the next field
    []
    >>> [x is f1 for x in b.add(f2)], b.batches  # batch [3, 4] completes f1
    ([True], 2)
    >>> [x is f2 for x in b.flush()], f2.probs.ravel().tolist(), b.batches  # batch [5, pad]
    ([True], [4.0, 5.0], 3)
    >>> b.crops, b.padded
    (5, 1)
    """

    def __init__(self, processor: Any, batch_size: int) -> None:
        self.processor = processor
        self.batch_size = int(batch_size)
        self.pending: list[Any] = []
        self.batches = 0
        self.crops = 0
        self.padded = 0

    def _queued(self) -> int:
        return sum(p.n - p.cut for p in self.pending)

    def add(self, prepared: Any) -> list[Any]:
        """Queue a field; run every full batch now possible; return the fields completed."""
        self.pending.append(prepared)
        while self._queued() >= self.batch_size:
            self._run(self.batch_size)
        return self._complete()

    def flush(self) -> list[Any]:
        """Run what is left (one partial batch at most); return the fields completed."""
        while self._queued():
            self._run(min(self.batch_size, self._queued()))
        return self._complete()

    def _run(self, size: int) -> None:
        """One forward pass on the next ``size`` crops, in queue order."""
        from hcs.timing import stage

        parts, spans, filled = [], [], 0
        with stage("crop"):  # cutting the crops (hcs.timing, off by default)
            for p in self.pending:
                take = min(p.n - p.cut, size - filled)
                if take <= 0:
                    if filled == size:
                        break
                    continue
                filled += take
                spans.append((p, p.cut, p.cut + take))
                parts.append(self.processor.crops(p, p.cut, p.cut + take))
                p.cut += take
                if p.cut == p.n:
                    p.composed = None  # every crop cut: the composed planes are not needed
            if size < self.batch_size:  # pad: one input shape for every forward pass (see above)
                parts.append(np.zeros((self.batch_size - size, *parts[0].shape[1:]),
                                      parts[0].dtype))
            crops = np.concatenate(parts) if len(parts) > 1 else parts[0]
        with stage("classify"):
            probs = self.processor.classify(crops)
        del crops, parts
        i = 0
        for p, a, b in spans:
            p.probs[a:b] = probs[i: i + b - a]
            p.done += b - a
            i += b - a
        self.batches += 1
        self.crops += size
        self.padded += self.batch_size - size

    def _complete(self) -> list[Any]:
        """Fields at the head of the queue with every crop classified, in order."""
        done = []
        while self.pending and self.pending[0].done == self.pending[0].n:
            p = self.pending.pop(0)
            p.composed = None
            done.append(p)
        return done
