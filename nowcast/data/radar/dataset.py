"""`RadarData`: radar windows behind the SequenceData interface (docs/architecture.md).

Scoring is not here: `scoring.py` scores a model on `RadarData.split_windows` with
`verification.py`, and the baselines of `baselines.py` beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...config import Config, data_dir
from ...errors import NowcastError
from ...protocols import KNMI_DT_MIN, KNMI_EVAL_STRIDE, KNMI_FILE, KNMI_SPLITS
from ..base import Batch, flip_rotate
from .grid import SEED_GAP_MIN, SEED_SIZE, block_for, model_grid, prepared_events
from .readers import RadarEvents, is_pattern, pattern_files
from .units import dbz_to_unit
from .windows import RadarWindows, chronological_split, cut_windows, window_starts


def resolve_data_file(cfg: Config, name: str) -> Path:
    """A data file (or a folder of native files or images, or a glob pattern of native files:
    "opera/*.hdf") as given, else under the data folder (or its radar/ subfolder)."""
    given = Path(name)
    candidates = [given]
    base = data_dir(cfg)
    if base is not None and not given.is_absolute():
        candidates += [base / given, base / "radar" / given]
    for candidate in candidates:
        if is_pattern(candidate) and pattern_files(candidate):
            return candidate
        if candidate.exists():
            if not (candidate.is_file() or candidate.is_dir()):  # a FIFO: a wait for ever
                raise NowcastError(f"{name}: {candidate} is not a regular file or a folder")
            return candidate
    raise NowcastError(f"{name}: no such radar data file (looked in {', '.join(map(str, candidates))})")


def _ranges(rows: list[int]) -> str:
    """[0, 1, 2, 5] -> "events 0-2, 5"."""
    parts, start = [], None
    for i, e in enumerate(rows):
        start = e if start is None else start
        if i + 1 == len(rows) or rows[i + 1] != e + 1:
            parts.append(f"{start}-{e}" if e > start else f"{e}")
            start = None
    return "events " + ", ".join(parts)


def _check_step(events: RadarEvents) -> None:
    """The protocol's time step, or one line naming the file."""
    if events.dt_min != KNMI_DT_MIN:
        step = (f"frames are {events.dt_min} min apart" if events.dt_min else
                "no time step (neither 'times' nor meta 'dt_min': radar in the shared PV "
                "encoding states them)")
        raise NowcastError(f"{events.path}: {step}; protocol knmi-30-60 needs "
                           f"{KNMI_DT_MIN}-minute frames")


class RadarData:
    """Radar windows behind the SequenceData interface (docs/architecture.md).

    protocol knmi-30-60: train events 0-7, validation 8-9 (January 2021), test events 10-19
    (February 2021) of knmi_2021_refl_5min.npz, 4 km blocks (191 x 175), windows of 6 + 12
    frames starting every 6 frames (40 test windows). With `data_file` set as well, the test
    windows come from every event of that file instead (the protocol's "another radar file").
    Otherwise `data_file` is split by event in time order (`chronological_split`).
    `train_files`: every event of these files is added to the training events only (never to
    validation or test; no frame time may be shared with another split), at the same time step.
    `val_files`: likewise to validation only (`window_sets("val")`), each file on its own grid:
    rain for selection to see where the protocol's own validation events hold almost none.
    Frames are [0, 1] = clip(dBZ, 0, 70) / 70 with no data as 0; `mask` is True where there is
    data. `split_windows` gives the same windows in dBZ for scoring.
    """

    def __init__(self, cfg: Config, device: torch.device = torch.device("cpu"),
                 scoring_km: float | None = None, scoring_only: bool = False):
        self.cfg = cfg
        self.k_in, self.k_out = cfg.k_in, cfg.k_out
        self.window = cfg.k_in + cfg.k_out
        self.protocol = cfg.protocol if cfg.protocol == "knmi-30-60" else "none"
        self.sources: dict[str, tuple[RadarEvents, list[int]]] = {}
        self.block = cfg.block_size  # native pixels a block side (scoring: the model's size)
        if scoring_only and self.protocol == "knmi-30-60" and cfg.data_file:
            self._scoring_source(cfg, scoring_km)
        elif self.protocol == "knmi-30-60":
            self._protocol_sources(cfg)
        else:
            self._file_sources(cfg)
        scoring = "train" not in self.sources  # what trained the model is not read to score it
        self._move_to_validation([] if scoring else cfg.val_events or [])
        train_files, val_files = ([], []) if scoring else (cfg.train_files or [], cfg.val_files or [])
        self.extra_train = [self._extra_source(name) for name in train_files]
        self.extra_val = [self._extra_source(name, "val_files") for name in val_files]
        self._check_disjoint()
        # the training events live on the training device: windows are cut there
        training = [self.sources["train"]] if "train" in self.sources else []  # not scoring_only
        self.train_events = [torch.from_numpy(events.frames[e]).to(device)
                             for events, rows in [*training, *self.extra_train] for e in rows]
        for what, extra in (("training", self.extra_train), ("validation", self.extra_val)):
            if extra:
                self.description += f"; {what} also on every event of " + ", ".join(
                    f"{events.path.name} ({events.source})" for events, _ in extra)

    def _move_to_validation(self, chosen: list[int]) -> None:
        """val_events: events of the training split validated on instead (after the split's own
        validation events, in the order given): a rain-aware choice where the split's own
        validation events hold almost no rain. Never a test event."""
        if not chosen:
            return
        (events, train), (val_events, val) = self.sources["train"], self.sources["val"]
        wrong = [e for e in chosen if e not in train]
        if wrong or len(set(chosen)) != len(chosen):
            raise NowcastError(f"val_events {chosen}: each must be a distinct event of the training "
                               f"split of {events.path.name} ({_ranges(train)}); not {wrong or chosen}")
        if len(chosen) == len(train):
            raise NowcastError(f"val_events {chosen}: no training event of {events.path.name} left")
        self.sources["train"] = (events, [e for e in train if e not in chosen])
        self.sources["val"] = (val_events, [*val, *chosen])
        self.description += (f"; events {', '.join(map(str, chosen))} of {events.path.name} moved "
                             "from training to validation (val_events)")

    def _extra_source(self, name: str, key: str = "train_files") -> tuple[RadarEvents, list[int]]:
        """One of train_files or val_files: all its events, at the training data's time step."""
        events = self._load(resolve_data_file(self.cfg, name))
        step = self.sources["train"][0].dt_min
        if events.dt_min != step:
            raise NowcastError(f"{events.path}: frames are {events.dt_min} min apart; the training "
                               f"data's are {step} min ({key} must share the time step)")
        return events, list(range(len(events)))

    def _load(self, path: Path) -> RadarEvents:
        return prepared_events(path, self.cfg.radar_recipe, self.cfg.block_size)

    def _scoring_source(self, cfg: Config, scoring_km: float | None) -> None:
        """Every event of `data_file` as test windows, and nothing else read (`evaluate --data`:
        the checkpoint and that file are all it needs), in blocks of `scoring_km` (a model's
        pixel size, grid.block_for) where the file states its pixel size."""
        path = resolve_data_file(cfg, cfg.data_file)
        events = prepared_events(path, cfg.radar_recipe, cfg.block_size, scoring_km)
        block = block_for(events.pixel_km, scoring_km, cfg.block_size, path) \
            if cfg.radar_recipe == "blocks" else cfg.block_size
        _check_step(events)
        self.sources = {"test": (events, list(range(len(events))))}
        self.follows_protocol, self.block = False, block
        if self.n_windows("test") == 0:
            raise NowcastError(f"{path}: no event has the {self.window} frames ({cfg.k_in} in, "
                               f"{cfg.k_out} out) of a window; the longest has "
                               f"{max(len(f) for f in events.frames)}")
        self.description = (f"KNMI-30/60 scoring: {self.n_windows('test')} test windows ({cfg.k_in} in, "
                            f"{cfg.k_out} out) from every event of {path.name} ({events.source}), "
                            f"{self._grid_text(events)}")

    def _protocol_sources(self, cfg: Config) -> None:
        knmi_path = resolve_data_file(cfg, KNMI_FILE)
        knmi = self._load(knmi_path)
        if len(knmi) != 20:
            raise NowcastError(f"{knmi_path}: expected the protocol's 20 events, found {len(knmi)}")
        test_path = resolve_data_file(cfg, cfg.data_file) if cfg.data_file else knmi_path
        self.follows_protocol = test_path.resolve() == knmi_path.resolve()
        test = knmi if self.follows_protocol else self._load(test_path)
        self.sources = {"train": (knmi, list(KNMI_SPLITS["train"])),
                        "val": (knmi, list(KNMI_SPLITS["val"])),
                        "test": (test, list(KNMI_SPLITS["test"]) if self.follows_protocol
                                 else list(range(len(test))))}
        for events, _ in self.sources.values():
            _check_step(events)
        where = ("events 10-19 (Feb 2021)" if self.follows_protocol else "every event")
        self.description = (
            f"KNMI-30/60: {self.n_windows('test')} test windows ({cfg.k_in} in, {cfg.k_out} out) "
            f"from {where} of {test.path.name} ({test.source}), {self._grid_text(test)}; "
            f"trained on events 0-7, validated on 8-9 (Jan 2021) of {KNMI_FILE}")

    def _grid_text(self, test: RadarEvents) -> str:
        """The grid scored, as descriptions state it: '4 km blocks 191x175' (the block size from
        the file's pixel size where it states one)."""
        th, tw = test.frames[self.sources["test"][1][0]].shape[-2:]
        if self.cfg.radar_recipe != "blocks":
            return f"the seed's {th}x{tw} resize"
        size = (f"{test.pixel_km * self.block:g} km" if test.pixel_km
                else f"{self.block}x{self.block}-pixel")
        return f"{size} blocks {th}x{tw}"

    def _file_sources(self, cfg: Config) -> None:
        path = resolve_data_file(cfg, cfg.data_file)
        events = self._load(path)
        splits = chronological_split(len(events), path)
        self.sources = {split: (events, rows) for split, rows in splits.items()}
        self.follows_protocol = False
        recipe = (f"{cfg.block_size}x{cfg.block_size} dBZ blocks" if cfg.radar_recipe == "blocks"
                  else f"the seed's recipe (square crop, {SEED_SIZE}x{SEED_SIZE}, events at gaps "
                       f"> {SEED_GAP_MIN} min)")
        self.description = (f"radar file {path.name} ({events.source}): {len(events)} events split "
                            f"in time order {len(splits['train'])}/{len(splits['val'])}/"
                            f"{len(splits['test'])}, {recipe}, {self.frame_shape[0]}x"
                            f"{self.frame_shape[1]}, {cfg.k_in}+{cfg.k_out} frames")

    @property
    def grid(self) -> dict:
        """The grid the model is trained on (grid.model_grid): model.pt records it."""
        events = self.sources.get("train", self.sources["test"])[0]
        return model_grid(events.dt_min, events.pixel_km, self.cfg.radar_recipe, self.block)

    @property
    def frame_shape(self) -> tuple[int, int]:
        events, rows = self.sources.get("train", self.sources["test"])
        return tuple(events.frames[rows[0]].shape[-2:])

    def _check_disjoint(self) -> None:
        """No frame time (or, without times, no event) in two splits: defect 2 of the seed."""
        seen: dict[tuple, str] = {}
        for split, (events, rows) in [*self.sources.items(),
                                      *(("train", source) for source in self.extra_train),
                                      *(("val", source) for source in self.extra_val)]:
            for e in rows:
                keys = ([("event", str(events.path), e)] if events.times[e] is None
                        else [("time", t) for t in events.times[e].tolist()])
                for key in keys:
                    if seen.setdefault(key, split) != split:
                        raise NowcastError(f"{events.path}: the {split} and {seen[key]} splits "
                                           f"share data ({key[-1]})")

    # --- SequenceData -------------------------------------------------------------------
    def train_batch(self, step: int, batch_size: int, length: int) -> Batch:
        """Random windows of `length` frames from the training events, deterministic in
        (seed, step); random crops (crop_size) and flips / 90-degree rotations (augment).
        The draws are made on the host, the windows cut on the device."""
        events = self.train_events
        starts = np.array([max(len(e) - length + 1, 0) for e in events])
        if starts.sum() == 0:
            raise NowcastError(f"{self.sources['train'][0].path}: no training event has {length} frames")
        rng = np.random.default_rng([self.cfg.seed, step])
        # events weighted by their number of windows: every training window equally likely
        chosen = rng.choice(len(events), size=batch_size, p=starts / starts.sum())
        clips = []
        for i in chosen:
            start = int(rng.integers(0, starts[i]))
            clips.append(self._augment(events[i][start:start + length], rng))
        clips = torch.stack(clips)
        return Batch(dbz_to_unit(clips), torch.isfinite(clips))

    def _augment(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        c = self.cfg.crop_size
        h, w = clip.shape[-2:]
        if c:
            if c > min(h, w):
                raise NowcastError(f"crop_size {c} is larger than the {h}x{w} frames")
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            clip = clip[:, top:top + c, left:left + c]
        return flip_rotate(clip, rng) if self.cfg.augment else clip

    def split_windows(self, which: str) -> RadarWindows:
        """The fixed windows of a split in dBZ (every 6 frames, whole frames); "train": the
        training events' windows cut the same way (for scoring the final model there too)."""
        if which not in ("train", "val", "test"):
            raise NowcastError(f"unknown split {which!r}: expected 'train', 'val' or 'test'")
        events, rows = self.sources[which]
        return cut_windows(events, rows, self.window, KNMI_EVAL_STRIDE)

    def window_sets(self, which: str) -> list[RadarWindows]:
        """Every set of fixed windows of a split, one per source (grids differ between sources,
        so sources are never stacked): the split's own windows, and for "val" those of every
        event of each of val_files after them. Verification pools their counts and sums."""
        sets = [self.split_windows(which)]
        if which == "val":
            sets += [cut_windows(events, rows, self.window, KNMI_EVAL_STRIDE)
                     for events, rows in self.extra_val]
        return sets

    def n_windows(self, which: str) -> int:
        events, rows = self.sources[which]
        return sum(len(window_starts(len(events.frames[e]), self.window, KNMI_EVAL_STRIDE))
                   for e in rows)

    def split(self, which: str) -> Batch:
        windows = self.split_windows(which)
        return Batch(dbz_to_unit(windows.dbz), np.isfinite(windows.dbz))
