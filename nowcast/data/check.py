"""What a run will read, checked before any results folder exists (`check_inputs`): the files
exist, and their frames fit the model (size-bound layers), a crop and the curriculum.

Shapes and dtypes come from the files' headers (`base.npz_header`), so the check costs no data loading; a
file whose header cannot be read is left to its reader, which fails the run at run time with
the file named (a corrupt file exists and passes here, as it should).
`nowcast train`, the notebook (experiment.run_experiment) and `nowcast run` / `sweep`
(launch.params.collect) all call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config import Config, data_dir
from ..errors import NowcastError
from ..models import check_frame_size
from ..protocols import KNMI_FILE
from .base import check_sequence_frames, npz_header, npz_shape
from .radar.dataset import resolve_data_file
from .moving_mnist import DIGIT
from .sequence_file import MIN_SEQUENCES
from .radar.readers import check_meta
from .radar.grid import SEED_SIZE


def check_paths(cfg: Config, where: str) -> None:
    """Files the run will read must exist now (a corrupt one fails at run time, as it should)."""
    if cfg.data_dir and not Path(cfg.data_dir).is_dir():
        raise NowcastError(f"{where}: data_dir '{cfg.data_dir}' is not a folder")
    if cfg.dataset == "radar":
        for name in ([KNMI_FILE] if cfg.protocol == "knmi-30-60" else []) + \
                ([cfg.data_file] if cfg.data_file else []) + list(cfg.train_files or []):
            try:
                check_meta(resolve_data_file(cfg, name))
            except NowcastError as e:
                raise NowcastError(f"{where}: {e}") from None
    elif cfg.data_file and not Path(cfg.data_file).is_file():
        raise NowcastError(f"{where}: data_file {cfg.data_file}: no such data file "
                           f"(relative paths are taken from {Path.cwd()})")
    if cfg.dataset == "mmnist" and cfg.digits == "mnist":
        folder = data_dir(cfg)
        if folder is None or not (folder / "mnist.npz").is_file():
            raise NowcastError(f"{where}: digits: mnist needs mnist.npz in data_dir or "
                               f"$NOWCAST_DATA_DIR (found none)")


def _radar_frame(cfg: Config, name: str) -> Optional[tuple[int, int]]:
    """The frame shape of a radar file on the run's grid (radar.grid.prepare's recipes)."""
    path = resolve_data_file(cfg, name)
    shape = npz_shape(path) if path.is_file() else None
    if shape is None or len(shape) < 2:
        return None  # native files and folders: read at run time
    h, w = shape[-2:]
    if cfg.radar_recipe == "blocks":
        return h // cfg.block_size, w // cfg.block_size
    return (SEED_SIZE, SEED_SIZE) if cfg.radar_recipe == "seed" else (h, w)


def frame_shapes(cfg: Config) -> dict[str, tuple[int, int]]:
    """Frame shapes the model will be given, by use ('train', 'test'; npz: 'data'): the model
    is built for the training frames (models.model_size); {} for Moving MNIST (made at
    image_size) and for files whose header does not tell."""
    if cfg.dataset == "npz":
        shape = npz_shape(Path(cfg.data_file))
        return {"data": tuple(shape[-2:])} if shape is not None and len(shape) == 4 else {}
    if cfg.dataset != "radar":
        return {}
    train = _radar_frame(cfg, KNMI_FILE if cfg.protocol == "knmi-30-60" else cfg.data_file)
    test = _radar_frame(cfg, cfg.data_file) if cfg.data_file else train
    shapes = {k: v for k, v in (("train", train), ("test", test)) if v is not None}
    c = cfg.crop_size
    extra = {name: _radar_frame(cfg, name) for name in cfg.train_files or []}
    for name, shape in extra.items():
        if shape is not None and not c and shape != train:
            raise NowcastError(f"train_files: {name} has {shape[0]}x{shape[1]} frames on the "
                               f"run's grid, the training data {train[0]}x{train[1]}: set "
                               f"crop_size to train on crops of both")
    for name, shape in [("the training data", train), *extra.items()]:
        if c and shape is not None and c > min(shape):
            raise NowcastError(f"crop_size {c} is larger than the {shape[0]}x{shape[1]} "
                               f"frames of {name}")
    if c and train is not None:
        shapes["train"] = (c, c)
    return shapes


def _check_sequence_file(cfg: Config) -> None:
    """An npz file's frames must be (N,T,H,W) uint8 (from its header), and its sequences must
    hold a whole window of every curriculum stage."""
    header = npz_header(Path(cfg.data_file)) if cfg.dataset == "npz" else None
    if header is None:
        return
    shape, dtype = header
    check_sequence_frames(Path(cfg.data_file), dtype, shape)
    if shape[0] < MIN_SEQUENCES:  # the split needs one each, found before any folder exists
        raise NowcastError(f"{cfg.data_file}: need at least {MIN_SEQUENCES} sequences to split "
                           f"train/val/test, got {shape[0]}")
    t = shape[1]
    for length in [cfg.k_in + cfg.k_out] + [2 * L for L in cfg.curriculum or []]:
        if length > t:
            stage = f"curriculum stage {length // 2}" if length != cfg.k_in + cfg.k_out \
                else "k_in + k_out"
            raise NowcastError(f"{cfg.data_file}: sequences have {t} frames; {stage} needs "
                               f"{length} frames")


def check_inputs(cfg: Config, where: str = "parameters") -> None:
    """NowcastError (one line, naming `where` and the file) unless the run can read its data
    and its model can run on the frames."""
    check_paths(cfg, where)
    if cfg.dataset == "mmnist" and cfg.image_size < DIGIT:  # a model alone may be smaller
        raise NowcastError(f"{where}: image_size {cfg.image_size} is smaller than a {DIGIT}px digit")
    try:
        _check_sequence_file(cfg)
        shapes = frame_shapes(cfg)
        built = shapes.get("train", shapes.get("data"))  # the model is built for these frames
        for shape in dict.fromkeys(shapes.values()):
            check_frame_size(cfg, shape, built)
    except NowcastError as e:
        raise NowcastError(f"{where}: {e}") from None
