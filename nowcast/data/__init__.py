"""Sequence data behind one interface (docs/architecture.md): get_data(cfg) -> SequenceData.

| dataset | class          | module              | what                                          |
|---------|----------------|---------------------|-----------------------------------------------|
| mmnist  | `MovingMNIST`  | moving_mnist.py     | Moving MNIST generated from real digits       |
| npz     | `SequenceFile` | sequence_file.py    | any (N,T,H,W) uint8 sequence file, split by sequence |
| radar   | `RadarData`    | radar/ (dataset.py) | PV-encoded radar composites, split by storm event |

What they share (`Batch`, `to_unit`, the .npz readers) is in base.py. This module holds the
registry only; import everything else from the module that owns it.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import NowcastError
from .moving_mnist import MovingMNIST
from .radar import RadarData
from .sequence_file import SequenceFile

DATASETS = {"mmnist": MovingMNIST, "npz": SequenceFile, "radar": RadarData}


def get_data(cfg: Config, device: str | torch.device = "cpu"):
    """The dataset `cfg.dataset` names, built from `cfg`; training batches are made on `device`."""
    try:
        dataset = DATASETS[cfg.dataset]
    except KeyError:
        raise NowcastError(f"unknown dataset {cfg.dataset!r}: expected one of "
                           f"{', '.join(DATASETS)}") from None
    return dataset(cfg, torch.device(device))
