"""Cross-cutting helpers, one each: atomic writes, the cache folder, the repository root,
optional imports. Every other module uses these rather than its own variant.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Iterator

from .errors import MissingDependency, first_line


def duration(seconds: Any) -> str:
    """A length of time as nowcast writes every one (status, plan lines, report, slides):
    '45 s', '58 min', '1 h 02 min'; '' when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return ""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    m = int(round(s / 60))
    return f"{m} min" if m < 60 else f"{m // 60} h {m % 60:02d} min"


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    A reader sees the old file or the new one, never half of one; on error the temporary
    file is removed and `path` is left as it was. keep_suffix: the temporary name ends in
    `path`'s suffix (for a writer that reads the output type from it, as marp does).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" + path.suffix * keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON: a NaN or infinity raises ValueError (it is no JSON token, and other readers
    refuse it); map scores that may legitimately be undefined with `finite_or_none` first."""
    return write_text(path, json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


def finite_or_none(obj: Any) -> Any:
    """obj with every non-finite float (in nested dicts, lists and tuples) replaced by None:
    JSON's null for a score that is undefined (e.g. CSI with no event in truth or forecast)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """Rows of equal keys as CSV with a header (an empty file for no rows)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write `text` atomically unless the file already holds it; True when written.
    (Unchanged files keep their mtime, so renderers that compare stamps skip them.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return False
    write_text(path, text)
    return True


# a file of a results folder larger than this is not read: metrics, params and figures are KBs
# to MBs, and a reader must not be made to load a file of any size someone put there
MAX_DATA_BYTES = 256 * 2**20


def regular_file(path: str | Path) -> bool:
    """Whether `path` itself is a regular file: not a link (which could bring any file of the
    machine into a report), not a FIFO (opening one waits for ever), not a device."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_data(path: str | Path, limit: int = MAX_DATA_BYTES) -> bytes:
    """The bytes of a regular file read as data (results folders are written by anyone with
    access to them); OSError for a link, a FIFO, a device or a file over `limit` bytes. Opened
    without following a link or waiting on a FIFO, then checked on the open descriptor."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path}: not a regular file")
        if info.st_size > limit:
            raise OSError(f"{path}: {info.st_size:,} bytes, more than the {limit:,} read")
        return f.read(limit + 1)[:limit]


def read_data_text(path: str | Path) -> str:
    """read_data as UTF-8 text (ValueError when it is not)."""
    return read_data(path).decode("utf-8")


def cache_dir() -> Path:
    """Where derived data is kept between runs: $NOWCAST_CACHE, else ~/.cache/nowcast."""
    return Path(os.environ.get("NOWCAST_CACHE") or Path.home() / ".cache" / "nowcast")


def repo_root() -> Path:
    """The checkout nowcast runs from (an editable install); else the current folder, for a
    copied tree. Report, slides, notebook and SLURM scripts are found relative to it."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "report" / "index.qmd").is_file() else Path.cwd()


def repo_file(rel: str | Path) -> Path:
    """A file of the project: relative to the current folder if there, else to the checkout."""
    rel = Path(rel)
    return rel if rel.exists() else repo_root() / rel


def optional_import(name: str, extra: str):
    """Import a module that only some features need (pysteps, papermill, typst, ...).

    Raises MissingDependency (a NowcastError) naming the pip extra that provides it, so that
    callers can tell "not installed here" from any other failure by its type.
    pysteps prints a banner on import: it is silenced.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(name)
    except ImportError as e:
        raise MissingDependency(name, extra, first_line(e, "")) from None
