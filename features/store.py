"""The HDF5 feature store: `<feature set>/shard-<k>-of-<n>.h5` files plus `index.json`.

Each shard holds `ids` (row order) and one dataset per feature key (`video/pooled` (N, D),
`video/temporal` (N, T', D), ...), chunked along N. Its attributes carry the provenance:
`config_hash`, the resolved feature config (`config`, YAML) and a JSON `provenance`.

Writes are crash-safe and resumable. Rows are committed in parts
(`.parts/shard-<k>-of-<n>/part-<i>.h5`), each written under a `.partial` name and renamed when
whole; `finish()` streams the old shard and the parts into a new shard, renames it into place and
only then removes the parts. A killed run loses at most the rows not yet committed, a reader
only ever opens finished shards, and the next run skips every id already committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
from vidprobe.features.errors import CorruptStoreError, DiskFull, StoreError
from vidprobe.features.files import atomic_path, disk_error, require_space, write_json
from vidprobe.features.identity import config_diff, identity
from vidprobe.features.locks import WriteLock

SHARD_RE = re.compile(r"shard-(\d+)-of-(\d+)\.h5$")
STR = h5py.string_dtype("utf-8")
COPY_ROWS = 1024  # rows copied at a time when merging: memory stays flat in the number of samples
PART_OVERHEAD = 1 << 20  # HDF5's own bytes per file, and room to spare


def shard_name(index: int, count: int) -> str:
    return f"shard-{index}-of-{count}.h5"


def shard_of(sample_id: str, count: int) -> int:
    """Which of `count` shards holds `sample_id`: a stable hash, so a manifest that gains samples keeps
    every earlier sample where it was."""
    return int.from_bytes(hashlib.sha1(sample_id.encode()).digest()[:8], "big") % count


def shard_paths(directory: Path) -> list[Path]:
    return sorted(
        (p for p in Path(directory).glob("shard-*-of-*.h5") if SHARD_RE.search(p.name)),
        key=lambda p: tuple(int(g) for g in SHARD_RE.search(p.name).groups()),
    )


def feature_keys(h5: h5py.File) -> dict[str, tuple]:
    keys: dict[str, tuple] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name != "ids":
            keys[name] = obj.shape[1:]

    h5.visititems(visit)
    return keys


def _read_ids(path: Path) -> list[str]:
    with open_h5(path) as h5:
        return list(h5["ids"].asstr()[()])


def open_h5(path: Path) -> h5py.File:
    """An HDF5 file for reading; a file that is not whole (an interrupted copy or sync) raises CorruptStoreError
    naming it, its expected and actual size where HDF5 says them, and the fix."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        sizes = re.search(r"\beof = (\d+),.*stored_eof = (\d+)", str(err))
        size = f": {sizes.group(1)} bytes of {sizes.group(2)}" if sizes else f" ({err})"
        raise CorruptStoreError(
            f"{path} is broken{size}; re-run `vidprobe embed` with the same config: it moves the "
            "broken shard aside and embeds its rows again (or restore the file from its copy)"
        ) from None


class ShardWriter:
    """Writes shard `index` of `count`; `attrs` must hold `config_hash` and `config` (YAML).

    Only one writer per shard: the shard's lock (features.locks) is held from here to `finish` or `close`.
    A shard found broken (an interrupted copy) is moved aside with a warning and its rows embedded again.
    """

    def __init__(
        self,
        directory: str | Path,
        index: int,
        count: int,
        attrs: dict,
        *,
        compression: str | None = None,
        commit_every: int = 256,
        force: bool = False,
        lock_timeout: float = 600.0,
    ):
        self.dir = Path(directory)
        self.final = self.dir / shard_name(index, count)
        self.parts_dir = self.dir / ".parts" / self.final.stem
        self.attrs, self.compression, self.commit_every = attrs, compression, commit_every
        self.count = count
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = WriteLock(self.final, lock_timeout, f"shard {self.final}")
        self.lock.acquire()
        try:
            self._check_existing(force)
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            for stale in list(self.dir.glob(f"{self.final.name}*.partial")) + list(self.parts_dir.glob("*.partial")):
                stale.unlink()  # a run killed mid-write: these rows were never committed
            self.done = self._committed_ids()
        except BaseException:
            self.lock.release()
            raise
        self.buffer: list[tuple[list[str], dict[str, np.ndarray]]] = []
        self.buffered = 0  # rows in the buffer
        self.n_new = 0
        # the next part's number, after the highest kept (not their count: a part merged before a crash is gone)
        self.next_part = max((int(p.stem.split("-")[1]) + 1 for p in self.parts()), default=0)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Give up the shard without merging (committed parts stay for the next run)."""
        self.lock.release()

    # --- what is there already -------------------------------------------------------------
    def _existing(self) -> list[Path]:
        parts = sorted(self.dir.glob(".parts/*/part-*.h5"))
        return shard_paths(self.dir) + parts

    def _check_existing(self, force: bool) -> None:
        problems = []
        for path in self._existing():
            try:
                with open_h5(path) as h5:
                    old_hash, old_cfg = h5.attrs.get("config_hash"), h5.attrs.get("config", "")
            except CorruptStoreError as err:
                if path == self.final or path.parent == self.parts_dir:
                    self._move_aside(path, err)
                continue  # another rank's shard: its own writer repairs it
            m = SHARD_RE.search(path.name) or SHARD_RE.search(path.parent.name + ".h5")
            other_count = m is not None and int(m.group(2)) != self.count
            if old_hash != self.attrs["config_hash"]:
                diff = config_diff(old_cfg, self.attrs["config"]) or [
                    f"config hash {old_hash} -> {self.attrs['config_hash']}"
                ]
                problems.append((path, "made with another config: " + "; ".join(diff)))
            elif other_count:
                problems.append((path, f"split into {m.group(2)} shards, this run asks for {self.count}"))
        if not problems:
            return
        if not force:
            lines = "\n  ".join(f"{p.relative_to(self.dir)}: {why}" for p, why in problems)
            raise StoreError(
                f"{self.dir} holds shards this run must not mix with:\n  {lines}\n"
                "Use another embed.feature_set, the same settings, or --force to rebuild."
            )
        for path, _ in problems:
            if path.parent.name.startswith("shard-"):
                shutil.rmtree(path.parent, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _move_aside(self, path: Path, err: CorruptStoreError) -> None:
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        print(f"warning: {err}\nmoved it to {aside}: its rows are embedded again")

    def _committed_ids(self) -> set[str]:
        done = set(_read_ids(self.final)) if self.final.exists() else set()
        for part in self.parts():
            ids = _read_ids(part)
            if set(ids) <= done:  # merged before a crash that came ahead of the clean-up
                part.unlink()
            else:
                done.update(ids)
        return done

    def parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.h5"))

    # --- writing ---------------------------------------------------------------------------
    def append(self, ids: list[str], features: dict[str, np.ndarray]) -> None:
        for key, arr in features.items():
            if len(arr) != len(ids):
                raise ValueError(f"{key}: {len(arr)} rows for {len(ids)} ids")
        self.buffer.append((list(ids), features))
        self.buffered += len(ids)
        if self.buffered >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Write the buffered rows as one part, atomically; a full disk is a DiskFull that says how to resume."""
        if not self.buffer:
            return
        ids = [i for chunk, _ in self.buffer for i in chunk]
        feats = {k: np.concatenate([f[k] for _, f in self.buffer]) for k in self.buffer[0][1]}
        path = self.parts_dir / f"part-{self.next_part:06d}.h5"
        size = sum(a.nbytes if a.dtype != object else 64 * len(a) for a in feats.values()) + 64 * len(ids)
        with self._disk_full_says_how_to_resume():
            require_space(self.parts_dir, size + PART_OVERHEAD, f"committing {len(ids)} rows to {self.final.name}")
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
                h5.attrs["config_hash"] = self.attrs["config_hash"]
                h5.attrs["config"] = self.attrs["config"]
                h5.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=STR)
                for key, arr in feats.items():
                    h5.create_dataset(key, data=arr, dtype=STR if arr.dtype == object else arr.dtype)
        self.done.update(ids)
        self.n_new += len(ids)
        self.next_part += 1
        self.buffer, self.buffered = [], 0

    @contextlib.contextmanager
    def _disk_full_says_how_to_resume(self):
        try:
            yield
        except DiskFull as err:
            raise DiskFull(
                f"disk full at {self.dir}: {self.stored()} rows committed; {err}: the run resumes where it stopped"
            ) from None
        except (OSError, RuntimeError) as err:
            if not disk_error(err):
                raise
            raise DiskFull(
                f"disk full at {self.dir}: {self.stored()} rows committed; free space and re-run to resume"
            ) from None

    def stored(self) -> int:
        return len(self.done)

    def check_space(self, rows: int, bytes_per_row: float) -> None:
        """Before writing `rows` more rows of `bytes_per_row`: refuse, with the numbers, when the filesystem has
        less room than they need (twice: the parts, then the merged shard beside the old one, uncompressed)."""
        old = self.final.stat().st_size if self.final.exists() else 0
        rows_total = rows + len(self.done)
        require_space(
            self.dir,
            int(2 * rows * bytes_per_row + old + rows_total * 64 + PART_OVERHEAD),
            f"{rows} rows of {bytes_per_row / 1024:.1f} KiB for {self.final.name} (an upper bound: compression aside)",
        )

    def finish(self) -> Path:
        """Merge the shard and its committed parts into a new shard (each id once), then drop the parts."""
        try:
            self.commit()
            parts = self.parts()
            if parts or not self.final.exists():
                with self._disk_full_says_how_to_resume():
                    self._merge(([self.final] if self.final.exists() else []) + parts)
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # other ranks still have parts there
                self.parts_dir.parent.rmdir()
        finally:
            self.lock.release()
        return self.final

    def _merge(self, sources: list[Path]) -> None:
        merge(self.final, sources, self.attrs, self.compression)


def merge(final: Path, sources: list[Path], attrs: dict, compression: str | None = None) -> int:
    """`sources` into one shard at `final` (written beside it, renamed when whole), each id once: the first of
    its rows. Returns the rows written."""
    layout, keep, seen = {}, [], set()
    for src in sources:
        with open_h5(src) as h5:
            ids = h5["ids"].asstr()[()]
            keys = {k: (shape, h5[k].dtype) for k, shape in feature_keys(h5).items()}
        first = np.zeros(len(ids), dtype=bool)  # each id once: the first of its rows, whatever the parts hold
        for j, sid in enumerate(ids):
            if sid not in seen:
                seen.add(sid)
                first[j] = True
        keep.append(first)
        if layout and keys != layout:
            raise StoreError(f"{src} holds {sorted(keys)}, other parts hold {sorted(layout)}")
        layout = keys
    total = int(sum(k.sum() for k in keep))
    require_space(final.parent, sum(p.stat().st_size for p in sources) + PART_OVERHEAD, f"merging {final.name}")
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as out:
        for key, value in attrs.items():
            out.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
        out.attrs["num_rows"] = total
        out.create_dataset("ids", shape=(total,), dtype=STR, chunks=(min(max(total, 1), 4096),))
        for key, (shape, dtype) in layout.items():
            row_bytes = max(1, int(np.prod(shape)) * dtype.itemsize)
            chunk = (max(1, min(total, 256, (1 << 20) // row_bytes)), *shape)
            out.create_dataset(key, shape=(total, *shape), dtype=dtype, chunks=chunk, compression=compression)
        row = 0
        for src, mask in zip(sources, keep):
            with h5py.File(src, "r") as h5:
                for a in range(0, len(mask), COPY_ROWS):
                    b = min(len(mask), a + COPY_ROWS)
                    take = mask[a:b]
                    n = int(take.sum())
                    if not n:
                        continue
                    out["ids"][row : row + n] = h5["ids"][a:b][take]
                    for key in layout:
                        out[key][row : row + n] = h5[key][a:b][take]
                    row += n
    return total


def write_index(directory: str | Path) -> dict:
    """Summarise the finished shards of a feature set into `index.json` (written atomically)."""
    directory = Path(directory)
    shards, rows, keys, hashes = [], 0, {}, set()
    for path in shard_paths(directory):
        with open_h5(path) as h5:
            shards.append({"file": path.name, "rows": int(h5["ids"].shape[0])})
            rows += shards[-1]["rows"]
            keys.update({k: list(v) for k, v in feature_keys(h5).items()})
            hashes.add(str(h5.attrs.get("config_hash", "")))
    index = {"shards": shards, "num_rows": rows, "keys": keys, "config_hash": sorted(hashes)}
    write_json(directory / "index.json", index, unique=True)  # every rank writes it: the last one whole
    return index


def stage_attrs(config: dict, provenance: dict) -> dict:
    """Shard attributes for a stage's feature set: its resolved config (YAML), that config's hash, provenance."""
    config_hash, text = identity(config)
    return {"config_hash": config_hash, "config": text, "provenance": provenance}


def write_whole(
    directory: str | Path,
    attrs: dict,
    ids: list[str],
    make_features: Callable[[], dict[str, np.ndarray]],
    lock_timeout: float = 600.0,
) -> bool:
    """A small feature set (class prompts, one row per sample) written in one piece: rebuilt when its config
    changed, left as it is when it already holds `ids` (then `make_features` is not called). True if written."""
    with ShardWriter(directory, 0, 1, attrs, force=True, lock_timeout=lock_timeout) as writer:
        written = not set(ids) <= writer.done
        if written:
            writer.append(ids, make_features())
        writer.finish()
    write_index(directory)
    return written


class FeatureSet:
    """All finished shards of a feature set, read as one table keyed by sample_id."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.paths = shard_paths(self.dir)
        if not self.paths:
            raise StoreError(f"no feature shards in {self.dir}: run `vidprobe embed` with the same config first")
        counts = {SHARD_RE.search(p.name).group(2) for p in self.paths}
        if len(counts) > 1:
            raise StoreError(
                f"{self.dir} mixes shards split {' and '.join(sorted(counts))} ways; re-run embed with --force"
            )
        self.rows: dict[str, int] = {}  # sample_id -> row over all shards, in order (one int each: 100k ids ~ 10 MB)
        self.attrs: dict = {}
        self.keys: dict[str, tuple] = {}
        starts = [0]
        for path in self.paths:
            with open_h5(path) as h5:
                attrs = dict(h5.attrs)
                if self.attrs and attrs.get("config_hash") != self.attrs.get("config_hash"):
                    raise StoreError(f"{path} was made with another config than {self.paths[0]}")
                self.attrs = attrs
                names = h5["ids"].asstr()[()]
                again = next((sid for sid in names if sid in self.rows), None) if self.rows else None
                self.rows.update(zip(names, range(starts[-1], starts[-1] + len(names))))
                if again is None and len(self.rows) < starts[-1] + len(names):  # a repeat within this shard
                    again = next(sid for sid, n in Counter(names).items() if n > 1)
                if again is not None:
                    raise StoreError(f"sample_id {again!r} appears twice in {self.dir}")
                starts.append(starts[-1] + len(names))
                self.keys = feature_keys(h5)
        self.starts = np.asarray(starts, dtype=np.int64)  # shard s holds rows starts[s] .. starts[s + 1] - 1

    @property
    def ids(self) -> list[str]:
        return list(self.rows)

    def has(self, ids: Iterable[str]) -> np.ndarray:
        """Whether each of `ids` has a row here (a bool array; no set of the ids is built)."""
        return np.fromiter((i in self.rows for i in ids), dtype=bool)

    @property
    def config_hash(self) -> str:
        return str(self.attrs.get("config_hash", ""))

    def dtypes(self) -> dict[str, np.dtype]:
        """Each key's stored dtype (its first shard's)."""
        with open_h5(self.paths[0]) as h5:
            return {key: h5[key].dtype for key in self.keys}

    def row_bytes(self) -> dict[str, int]:
        """Bytes one row of each numeric key takes, uncompressed (what a row costs on disk and in memory)."""
        return {
            key: int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            for (key, shape), dtype in zip(self.keys.items(), self.dtypes().values())
            if dtype.kind in "fiub"
        }

    def require_hash(self, expected: str, expected_config: str = "") -> None:
        if self.config_hash != expected:
            diff = config_diff(str(self.attrs.get("config", "")), expected_config) if expected_config else []
            what = ("; it differs in " + "; ".join(diff)) if diff else ""
            raise StoreError(
                f"{self.dir} was made with config hash {self.config_hash}, but this config gives {expected}{what}. "
                "Re-run `vidprobe embed` with this config, or point embed.feature_set at another name."
            )

    def get(self, key: str, ids: Iterable[str]) -> np.ndarray:
        """Rows of `key` for `ids`, in that order; only those rows are read, straight into the array returned."""
        ids = list(ids)
        missing = [i for i in ids if i not in self.rows]
        if missing:
            raise StoreError(f"{len(missing)} ids not in {self.dir} (e.g. {missing[:3]})")
        if key not in self.keys:
            raise StoreError(f"no feature {key!r} in {self.dir}; it has {sorted(self.keys)}")
        wanted = np.fromiter((self.rows[i] for i in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(wanted, kind="stable")  # read each shard's rows in stored order
        shard_ends = np.searchsorted(wanted[order], self.starts[1:])
        out = None
        for s, path in enumerate(self.paths):
            mine = order[(shard_ends[s - 1] if s else 0) : shard_ends[s]]
            if not len(mine):
                continue
            with open_h5(path) as h5:
                ds = h5[key]
                if out is None:
                    out = np.empty((len(ids), *ds.shape[1:]), dtype=ds.dtype)
                read_rows(ds, wanted[mine] - self.starts[s], out, mine)
        return out if out is not None else np.empty((0, *self.keys[key]))

    def chunks(
        self, key: str, ids: Iterable[str] | None = None, rows: int = 4096
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, values of `key`) `rows` at a time, for sets bigger than memory: every row in stored order, or
        the given `ids` in their order."""
        if ids is not None:
            ids = list(ids)
            for a in range(0, len(ids), rows):
                yield ids[a : a + rows], self.get(key, ids[a : a + rows])
            return
        if key not in self.keys:
            raise StoreError(f"no feature {key!r} in {self.dir}; it has {sorted(self.keys)}")
        for path in self.paths:
            with open_h5(path) as h5:
                names, ds = h5["ids"], h5[key]
                for a in range(0, len(names), rows):
                    yield list(names.asstr()[a : a + rows]), ds[a : a + rows]


def read_rows(ds: h5py.Dataset, rows: np.ndarray, out: np.ndarray, dest: np.ndarray, block: int = 4096) -> None:
    """`out[dest] = ds[rows]` for increasing `rows` (repeats allowed), `block` rows at a time: one contiguous span
    read where the rows are dense in it, else only the rows themselves; no copy of the whole selection is held."""
    for a in range(0, len(rows), block):
        part, to = rows[a : a + block], dest[a : a + block]
        lo, hi = int(part[0]), int(part[-1]) + 1
        if hi - lo <= 4 * len(part):
            out[to] = ds[lo:hi][part - lo]
        else:
            uniq, inverse = np.unique(part, return_inverse=True)
            out[to] = ds[uniq][inverse.reshape(-1)]


def verify(directory: str | Path) -> FeatureSet:
    """Every shard opens, ids are unique across shards, no NaN or inf, index.json lists what the shards hold,
    no rows left in unfinished parts; raises CorruptStoreError listing every problem."""
    directory = Path(directory)
    problems = [
        f"{p.relative_to(directory)}: committed rows of an unfinished run; re-run embed to finish it"
        for p in sorted(directory.glob(".parts/*/part-*.h5"))
    ]
    if not shard_paths(directory):
        return FeatureSet(directory)  # raises StoreError: no feature set here (a usage error, not a broken one)
    broken = []
    for shard in shard_paths(directory):
        try:
            open_h5(shard).close()
        except CorruptStoreError as err:
            broken.append(str(err))
    if broken:
        raise CorruptStoreError(f"{directory} is not whole:\n  " + "\n  ".join(problems + broken))
    try:
        fs = FeatureSet(directory)
    except StoreError as err:  # duplicate ids or mixed configs: the set is broken, not the command
        raise CorruptStoreError(f"{directory} is not whole:\n  " + "\n  ".join(problems + [str(err)])) from None
    for shard in fs.paths:
        problems += _check_shard(shard, fs.keys)
    index_path = directory / "index.json"
    if not index_path.is_file():
        problems.append("index.json is missing")
    else:
        listed = {s["file"]: s["rows"] for s in json.loads(index_path.read_text()).get("shards", [])}
        actual = {p.name: int(n) for p, n in zip(fs.paths, np.diff(fs.starts))}
        if listed != actual:
            problems.append(f"index.json lists {listed}, the shards hold {actual}")
    if problems:
        raise CorruptStoreError(f"{directory} is not whole:\n  " + "\n  ".join(problems))
    return fs


def _check_shard(shard: Path, keys: dict) -> list[str]:
    problems = []
    with h5py.File(shard, "r") as h5:
        n = h5["ids"].shape[0]
        for key in keys:
            ds = h5[key]
            if ds.shape[0] != n:
                problems.append(f"{shard.name}: {key} has {ds.shape[0]} rows for {n} ids")
            elif ds.dtype.kind == "f":
                for a in range(0, n, COPY_ROWS):  # chunk by chunk: memory stays flat
                    if not np.isfinite(ds[a : a + COPY_ROWS]).all():
                        problems.append(f"{shard.name}: {key} holds NaN or inf")
                        break
    return problems


def repair(directory: str | Path, lock_timeout: float = 600.0) -> list[str]:
    """Make a feature set whole where that needs no embedding, each shard under its writer's lock: duplicate rows
    dropped (the first kept), parts whose rows are all in their shard removed, a broken shard moved aside (its
    rows are embedded again by the next `embed`), index.json rewritten. Returns what was done."""
    directory = Path(directory)
    done = []
    for shard in shard_paths(directory):
        with WriteLock(shard, lock_timeout, f"shard {shard}"):
            try:
                with open_h5(shard) as h5:
                    ids, attrs = list(h5["ids"].asstr()[()]), {k: v for k, v in h5.attrs.items() if k != "num_rows"}
            except CorruptStoreError:
                aside = shard.with_name(f"{shard.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(shard, aside)
                done.append(f"{shard.name} is broken: moved to {aside.name}; re-run embed to embed its rows again")
                continue
            if len(set(ids)) < len(ids):
                kept = merge(shard, [shard], attrs)
                done.append(f"{shard.name}: dropped {len(ids) - kept} duplicate rows, kept the first of each id")
            for part in sorted((directory / ".parts" / shard.stem).glob("part-*.h5")):
                if set(_read_ids(part)) <= set(ids):
                    part.unlink()
                    done.append(f"removed {part.relative_to(directory)}: its rows are all in {shard.name}")
    write_index(directory)
    done.append("rewrote index.json")
    return done
