"""Rebuilding only what changed: content stamps for generated figures and renders, and copies
of run artifacts made only when the source is newer. A rebuild over many results folders
takes seconds because of these.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from PIL import Image

from ..errors import described
from ..paths import JobPaths
from ..results import Run
from ..util import atomic_path

STYLE_VERSION = "5"  # bump to force regeneration of every generated figure and render
RUN_FILES = JobPaths.FIGURES


BUILD = ".build"  # <out>/.build/: a build's own copy of the project and its _generated/


@contextmanager
def private_build(project: Path, out_dir: Path) -> Iterator[Path]:
    """The folder a report or deck for `out_dir` is built in: <out_dir>/.build/, holding a
    copy of the project's own files (index.qmd, deck.md, styles, ...) and its own _generated/,
    so that two builds into different --out folders never mix each other's runs (two sweeps'
    report jobs ending together). One build per out_dir at a time: a second waits for the
    first (an exclusive flock on <out_dir>/.build.lock). Kept between builds: what did not
    change is not made again."""
    out_dir.mkdir(parents=True, exist_ok=True)
    build = out_dir / BUILD
    with open(out_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build.mkdir(exist_ok=True)
        for source in project.iterdir():
            if source.is_file() and not source.name.startswith("."):
                copy_if_changed(source, build / source.name)
        yield build


def copy_if_changed(src: Path, dst: Path) -> None:
    """dst := src unless it already holds the same bytes (its mtime then stays)."""
    data = src.read_bytes()
    if not (dst.is_file() and dst.read_bytes() == data):
        with atomic_path(dst) as tmp:
            tmp.write_bytes(data)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps([STYLE_VERSION, obj], sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def _stamp_file(path: Path) -> Path:
    return path.with_name("." + path.name + ".hash")


def needs(path: Path, stamp: str) -> bool:
    """True unless `path` exists and was made from inputs with this stamp."""
    f = _stamp_file(path)
    return not (path.exists() and f.exists() and f.read_text() == stamp)


def mark(path: Path, stamp: str) -> None:
    _stamp_file(path).write_text(stamp)


def inputs_digest(files: Iterable[Path], extra: Any = None) -> str:
    """Names, sizes and mtimes of the inputs of a render: unchanged inputs, no re-render."""
    stats = []
    for f in sorted(set(files)):
        try:
            st = f.stat()
            stats.append((str(f), st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            stats.append((str(f), None))
    return digest([stats, extra])


def _up_to_date(src: Path, dst: Path) -> bool:
    try:
        s, d = src.stat(), dst.stat()
    except FileNotFoundError:
        return False
    return d.st_size == s.st_size and d.st_mtime_ns >= s.st_mtime_ns


def copy_if_newer(src: Path, dst: Path) -> Path:
    if _up_to_date(src, dst):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)
    return dst


def image_problem(path: Path) -> Optional[str]:
    """None when `path` is an image PIL can decode (a truncated or damaged PNG/GIF would stop
    the PDF renderer), else what is wrong with it."""
    try:
        with Image.open(path) as im:
            im.verify()  # structure and checksums
        with Image.open(path) as im:
            im.load()  # the pixels: verify() does not notice missing image data
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        return described(e)
    return None


def copy_artifacts(runs: list[Run], gen: Path, files: Iterable[str] = RUN_FILES) -> None:
    """Copy each run's figures to gen/runs/<slug>/; folders of runs no longer listed go, and
    so does the copy of a figure its run no longer has. A damaged figure is left out (with
    any older copy of it), with a warning naming the run and the file: one bad file never
    stops the report or the slides."""
    keep = {r.slug for r in runs}
    if (gen / "runs").is_dir():
        for old in (gen / "runs").iterdir():
            if old.is_dir() and old.name not in keep:
                shutil.rmtree(old)
    for r in runs:
        for name in files:
            src, dst = r.file(name), gen / "runs" / r.slug / name
            if src is None:
                dst.unlink(missing_ok=True)  # an earlier build's copy would be shown as the run's
                continue
            if _up_to_date(src, dst):
                continue
            problem = image_problem(src)
            if problem:
                dst.unlink(missing_ok=True)
                print(f"nowcast: warning: run {r.job_id}: {src} is damaged ({problem}); "
                      f"left out", file=sys.stderr)
                continue
            copy_if_newer(src, dst)
