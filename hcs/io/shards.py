"""Write one field's pyramid as zarr v3 sharded arrays, byte for byte what zarr itself writes.

``hcs convert`` writes one shard per field and level (chunk = one (t, c, z) plane, shard = the
whole array). Going through ``zarr.Array.__setitem__`` costs several milliseconds of Python per
array on zarr's single event-loop thread (array creation, indexers, the codec pipeline's
coroutines), which the GIL serialises across the convert threads: that overhead, not the codec,
kept the conversion at half the speed of decoding the TIFFs (``docs/scaling.md``).

:class:`FieldPyramidWriter` does the same work without that machinery, with zarr's own
metadata and algorithms:

- the ``zarr.json`` of every level (and of the field group) is produced once by zarr itself
  (``create_array`` into a :class:`zarr.storage.MemoryStore`, with the same arguments the
  zarr path uses) and copied for every field;
- the chunk encoder is built from that metadata (bytes codec, then Blosc with the ``typesize``,
  ``cname``, ``clevel``, ``shuffle`` and ``blocksize`` zarr recorded), the chunks are laid out
  in zarr's Morton order (``zarr.core.indexing.morton_order_iter``) and the shard index
  (offset, length pairs, little-endian uint64, then its CRC32C) is appended as zarr does;
- Blosc releases the GIL while compressing, so fields encode in parallel in threads.

Any metadata the writer does not know exactly how to reproduce (another codec chain, index at
the start, a big-endian machine) makes :meth:`FieldPyramidWriter.create` return ``None``, and
the caller writes through zarr. ``tests/test_shards.py`` checks that both paths give
identical files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

__all__ = ["FieldPyramidWriter"]

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def _chunk_encoder(meta: dict[str, Any], dtype: np.dtype) -> Any | None:
    """A numcodecs Blosc for a level's inner chunks, or None if the metadata is unexpected."""
    from numcodecs import Blosc

    codecs = meta.get("codecs") or []
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    cfg = codecs[0].get("configuration", {})
    if cfg.get("index_location", "end") != "end":
        return None
    index_codecs = cfg.get("index_codecs", [])
    names = [c.get("name") for c in index_codecs]
    if names != ["bytes", "crc32c"] or index_codecs[0].get("configuration", {}).get(
        "endian", "little"
    ) != "little":
        return None
    inner = cfg.get("codecs", [])
    if [c.get("name") for c in inner] != ["bytes", "blosc"]:
        return None
    if inner[0].get("configuration", {}).get("endian", "little") != "little":
        return None
    if dtype.itemsize > 1 and dtype.byteorder not in ("<", "=", "|"):
        return None
    b = inner[1].get("configuration", {})
    try:
        return Blosc(
            cname=b["cname"], clevel=int(b["clevel"]), shuffle=_SHUFFLE[b["shuffle"]],
            blocksize=int(b.get("blocksize", 0)), typesize=int(b["typesize"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class FieldPyramidWriter:
    """Writes the levels of one field (``t, c, z, y, x`` arrays) as zarr v3 sharded arrays.

    Build it with :meth:`create`; call :meth:`write` from any number of threads.
    """

    def __init__(
        self,
        group_json: bytes,
        level_json: list[bytes],
        level_shapes: list[tuple[int, ...]],
        encoder: Any,
        chunk_key: str,
    ) -> None:
        from zarr.core.indexing import morton_order_iter

        self.group_json = group_json
        self.level_json = level_json
        self.level_shapes = level_shapes
        self.encoder = encoder
        self.chunk_key = chunk_key
        sep = "/" if "/" in chunk_key else None
        self.chunk_dirs = chunk_key.split(sep)[:-1] if sep else []
        self.chunks_per_shard = [(*s[:3], 1, 1) for s in level_shapes]
        self.order = [list(morton_order_iter(c)) for c in self.chunks_per_shard]

    @classmethod
    def create(
        cls,
        level_shapes: Sequence[tuple[int, ...]],
        dtype: np.dtype,
        array_kwargs: Any,
    ) -> FieldPyramidWriter | None:
        """The writer for fields whose level ``i`` has shape ``level_shapes[i]``, or ``None``.

        Parameters
        ----------
        level_shapes
            (t, c, z, y, x) of each level.
        dtype
            The plate dtype.
        array_kwargs
            ``array_kwargs(shape)``: the keyword arguments the caller gives
            ``zarr.Group.create_array`` for a level of that shape (zarr v3, one shard per
            array, one chunk per plane); the templates are made with exactly these.

        Returns
        -------
        FieldPyramidWriter or None
            ``None`` when zarr's metadata uses something this writer does not reproduce; write
            through zarr then.
        """
        if sys.byteorder != "little":
            return None
        store_dict: dict[str, Any] = {}
        root = zarr.open_group(zarr.storage.MemoryStore(store_dict), mode="w", zarr_format=3)
        image = root.create_group("f")
        encoder = None
        for i, shape in enumerate(level_shapes):
            kwargs = array_kwargs(tuple(shape))
            if kwargs.get("shards") != tuple(shape) or kwargs.get("chunks") != (
                1, 1, 1, *shape[3:]
            ):
                return None
            image.create_array(str(i), **kwargs)
        level_json = [store_dict[f"f/{i}/zarr.json"].to_bytes() for i in range(len(level_shapes))]
        chunk_key = None
        for raw in level_json:
            meta = json.loads(raw)
            encoder = _chunk_encoder(meta, np.dtype(dtype))
            if encoder is None or meta.get("attributes"):
                return None
            cke = meta.get("chunk_key_encoding", {})
            sep = cke.get("configuration", {}).get("separator", "/")
            if cke.get("name") != "default" or sep not in ("/", "."):
                return None
            chunk_key = sep.join(["c"] + ["0"] * len(level_shapes[0]))
        group_json = store_dict["f/zarr.json"].to_bytes()
        assert chunk_key is not None
        return cls(group_json, level_json, [tuple(s) for s in level_shapes], encoder, chunk_key)

    def shard_bytes(self, level: int, data: np.ndarray) -> list[bytes]:
        """The pieces of one level's shard file: encoded chunks in zarr's order, then the index."""
        from google_crc32c import value as crc32c

        cps = self.chunks_per_shard[level]
        index = np.full((*cps, 2), np.iinfo(np.uint64).max, dtype="<u8")
        pieces: list[bytes] = []
        start = 0
        for coords in self.order[level]:
            plane = np.ascontiguousarray(data[coords[:3]])
            chunk = self.encoder.encode(plane)
            index[coords] = (start, len(chunk))
            start += len(chunk)
            pieces.append(bytes(chunk))
        index_bytes = index.tobytes()
        pieces.append(index_bytes + np.array([crc32c(index_bytes)], dtype="<u4").tobytes())
        return pieces

    def write(self, field_dir: str | Path, levels: Sequence[np.ndarray]) -> None:
        """Write the field group and its levels under ``field_dir`` (which must not exist).

        Parameters
        ----------
        field_dir
            The field's folder, e.g. ``plate.ome.zarr/B/3/0``.
        levels
            Level arrays, level 0 first, of the shapes and dtype the writer was made for.
        """
        os.mkdir(field_dir)
        with open(os.path.join(field_dir, "zarr.json"), "wb") as fh:
            fh.write(self.group_json)
        for i, data in enumerate(levels):
            if tuple(data.shape) != self.level_shapes[i]:
                raise ValueError(f"level {i} has shape {data.shape}, not {self.level_shapes[i]}")
            level_dir = os.path.join(field_dir, str(i))
            folder = level_dir
            os.mkdir(folder)
            for part in self.chunk_dirs:  # c/0/0/0/0: one mkdir each, top down
                folder = os.path.join(folder, part)
                os.mkdir(folder)
            with open(os.path.join(level_dir, "zarr.json"), "wb") as fh:
                fh.write(self.level_json[i])
            with open(os.path.join(level_dir, self.chunk_key), "wb") as fh:
                fh.writelines(self.shard_bytes(i, data))
