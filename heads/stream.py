"""Features bigger than memory: a split's rows copied once, as float16, into a file beside the feature set,
and read back a minibatch at a time.

`heads.data.load_split` hands out a `DiskRows` instead of a tensor when a split's features would take more
than `head.memory_mb` as float32. It stands in for the tensor where training touches it: `len`, `shape`,
`ndim`, `rows[idx]` (a float32 tensor of those rows while they fit in a chunk, e.g. a minibatch; a
`DiskRows` of them otherwise), `rows.map(f)` (e.g. standardised rows) and `chunks()`; `forward_chunks(model,
x)` runs a model over either, a chunk at a time. The file is made once per (feature set, key, rows) and
read with `preadv` (one call per run of adjacent rows), never memory-mapped: a mapped file's pages count in
the process's memory as they are touched, and the kernel maps them in large folios (a 2M-row train peaked
at 4.7 GB that way, 2.3 GB this way). The process holds at most a chunk; the page cache holds the rest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from vidprobe.features.store import FeatureSet

FLOAT16_MAX = float(np.finfo(np.float16).max)


class DiskRows:
    """Rows `index` (all when None) of a (N, ...) .npy file, as float32 tensors, `transform` applied."""

    def __init__(
        self,
        path: Path,
        chunk_rows: int,
        index: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.path, self.chunk_rows, self.index, self.transform = Path(path), max(1, chunk_rows), index, transform
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            fmt = np.lib.format
            header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, self.dtype = header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: rows must be stored in C order")
        self.row_shape = tuple(shape[1:])
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self._shape = (shape[0] if index is None else len(index), *self.row_shape)
        self._fd: int | None = None

    def __getstate__(self) -> dict:  # joblib workers open their own file
        return {**self.__dict__, "_fd": None}

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def __getitem__(self, idx) -> torch.Tensor | DiskRows:
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = idx.numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        rows = idx if self.index is None else self.index[idx]
        if len(rows) > self.chunk_rows:
            return DiskRows(self.path, self.chunk_rows, rows, self.transform)
        return self._read(rows)

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        raw = np.empty((len(rows), *self.row_shape), self.dtype)
        starts = np.flatnonzero(np.r_[True, np.diff(ordered) != 1]) if len(rows) else np.array([], int)
        for a, b in zip(starts, np.r_[starts[1:], len(rows)]):  # runs of adjacent rows: one read each
            view = memoryview(raw[a:b]).cast("B")
            done = os.preadv(self._fd, [view], self.offset + int(ordered[a]) * self.row_bytes)
            if done != len(view):
                raise OSError(f"{self.path}: short read ({done} of {len(view)} bytes); the file is truncated")
        block = np.empty(raw.shape, np.float32)
        block[order] = raw
        x = torch.from_numpy(block)
        return self.transform(x) if self.transform else x

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> DiskRows:
        """The same rows with `fn` applied to every chunk read (after any transform already there)."""
        inner = self.transform
        return DiskRows(self.path, self.chunk_rows, self.index, fn if inner is None else lambda x: fn(inner(x)))

    def chunks(self) -> Iterator[torch.Tensor]:
        for a in range(0, len(self), self.chunk_rows):
            rows = np.arange(a, min(a + self.chunk_rows, len(self)))
            yield self._read(rows if self.index is None else self.index[rows])


def forward_chunks(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor | DiskRows, device: torch.device | None = None
) -> torch.Tensor:
    """`model(x)`, a chunk at a time when `x` is on disk (each chunk moved to `device` when given)."""
    if isinstance(x, DiskRows):
        return torch.cat([model(chunk if device is None else chunk.to(device)) for chunk in x.chunks()])
    return model(x)


def nbytes(n: int, shape: tuple) -> int:
    """Bytes of n rows of `shape` as float32."""
    return 4 * n * int(np.prod(shape, dtype=np.int64))


def chunk_rows(memory_mb: int, row_shape: tuple) -> int:
    """Rows per chunk: an eighth of the budget (a chunk is read, converted and standardised: copies)."""
    return max(256, memory_mb * 2**20 // 8 // max(1, nbytes(1, row_shape)))


def copy_rows(
    fs: FeatureSet,
    key: str,
    ids: list[str],
    rows_per_chunk: int,
    prepare: Callable[[list[str], np.ndarray], torch.Tensor],
) -> Path:
    """The file of `key` for `ids` (in that order) under `<feature set>/.rows/`, made now if not there: chunk by
    chunk, each through `prepare` (pooling, checks), stored as float16 (float32 if a value is beyond float16's
    range). Its name hashes the shards (path, size, mtime), the key and the ids, so a changed set makes a new one."""
    digest = hashlib.sha256(
        "\n".join([key, *(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in fs.paths), *ids]).encode()
    ).hexdigest()[:16]
    path = fs.dir / ".rows" / f"{key.replace('/', '-')}-{digest}.npy"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
        try:
            write_rows(tmp, fs, key, ids, rows_per_chunk, prepare, np.float16)
        except OverflowError:
            write_rows(tmp, fs, key, ids, rows_per_chunk, prepare, np.float32)
        os.replace(tmp, path)  # whole or not at all: two runs making it at once both finish
    return path


def write_rows(
    path: Path,
    fs: FeatureSet,
    key: str,
    ids: list[str],
    rows_per_chunk: int,
    prepare: Callable[[list[str], np.ndarray], torch.Tensor],
    dtype,
) -> None:
    """A .npy file of `key` for `ids`, written front to back a chunk at a time (the header once the first
    chunk gives the row shape)."""
    with open(path, "wb") as f:
        for a in range(0, len(ids), rows_per_chunk):
            chunk = ids[a : a + rows_per_chunk]
            x = prepare(chunk, fs.get(key, chunk)).numpy()
            if dtype == np.float16 and np.nanmax(np.abs(x), initial=0.0) > FLOAT16_MAX:
                raise OverflowError(f"{key}: values beyond float16's range")
            if a == 0:
                header = {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                    "fortran_order": False,
                    "shape": (len(ids), *x.shape[1:]),
                }
                np.lib.format.write_array_header_2_0(f, header)
            f.write(np.ascontiguousarray(x, dtype=dtype).tobytes())
    if not ids:
        raise ValueError(f"no rows of {key} to copy")
