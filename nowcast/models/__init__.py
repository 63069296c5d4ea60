"""Model registry: get_model(config) builds the network a params set names.

| architecture        | module        | what it is                                              |
|---------------------|---------------|---------------------------------------------------------|
| convlstm_ed         | ed.py         | the seed's down/up-sampling ConvLSTM stack, autoregressive |
| encoder_forecaster  | forecaster.py | the thesis's encoder + conditional forecaster (Shi et al.)  |
| fc_lstm             | forecaster.py | FC-LSTM baseline on flattened frames                    |
"""

from __future__ import annotations

import torch

from ..errors import NowcastError
from .base import SequenceModel
from .cell import ConvLSTMCell
from .ed import ConvLSTMED
from .forecaster import FCLSTM, EncoderForecaster, conv_encoder_forecaster

__all__ = ["get_model", "check_architecture", "check_frame_size", "count_parameters", "compile_cells", "SequenceModel",
           "ConvLSTMCell", "ConvLSTMED", "EncoderForecaster", "FCLSTM"]


def _convlstm_ed(cfg) -> SequenceModel:
    return ConvLSTMED(cfg.hidden_sizes, cfg.filter_sizes, cfg.image_size, stride=cfg.stride,
                      max_pool=cfg.max_pool, transpose=cfg.transpose, norm=cfg.norm,
                      norm_groups=cfg.norm_groups, peephole=cfg.peephole, bias=cfg.bias,
                      leaky_slope=cfg.leaky_slope, feed_upward=cfg.feed_upward,
                      fused_gates=cfg.fused_gates)


def _encoder_forecaster(cfg) -> SequenceModel:
    if cfg.max_pool:
        raise NowcastError("encoder_forecaster does not down-sample: set max_pool: false")
    if cfg.feed_upward != "hidden":
        raise NowcastError("feed_upward applies to convlstm_ed only")
    return conv_encoder_forecaster(cfg.hidden_sizes, cfg.filter_sizes, cfg.image_size,
                                   stride=cfg.stride, norm=cfg.norm, norm_groups=cfg.norm_groups,
                                   peephole=cfg.peephole, bias=cfg.bias,
                                   leaky_slope=cfg.leaky_slope, fused_gates=cfg.fused_gates)


def _fc_lstm(cfg) -> SequenceModel:
    return FCLSTM(cfg.hidden_sizes, cfg.image_size)


MODELS = {"convlstm_ed": _convlstm_ed, "encoder_forecaster": _encoder_forecaster,
          "fc_lstm": _fc_lstm}


def get_model(cfg, device: str | torch.device = "cpu") -> SequenceModel:
    try:
        build = MODELS[cfg.architecture]
    except KeyError:
        raise NowcastError(f"unknown architecture '{cfg.architecture}' "
                           f"(choose from {', '.join(MODELS)})") from None
    with torch.device(device):
        return build(cfg)


def check_architecture(cfg) -> SequenceModel:
    """Raise NowcastError for an impossible architecture without allocating any weights;
    returns the model built on the meta device (its sizes, no storage)."""
    return get_model(cfg, device="meta")


def check_frame_size(cfg, shape: tuple[int, int]) -> None:
    """NowcastError when the model cannot run on frames of `shape` (size-bound layers:
    per-position peepholes, LayerNorm over [4C,H,W], FC-LSTM), found by running it on the
    meta device: no weights, no data, no time."""
    model = get_model(cfg, device="meta")
    multiple = getattr(model, "downsampling", 1)
    h, w = (-(-s // multiple) * multiple for s in shape)  # padded as forecast.padded pads
    try:
        with torch.no_grad():
            model(torch.zeros(1, cfg.k_in, h, w, device="meta"), 1)
    except (RuntimeError, ValueError) as e:
        raise NowcastError(f"the model (image_size {cfg.image_size}, peephole {cfg.peephole}, "
                           f"norm {cfg.norm}) cannot run on {shape[0]}x{shape[1]} frames "
                           f"({str(e).splitlines()[0][:120]})") from None


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def recurrent_cells(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules applied once per time step: ConvLSTM cells, and FC-LSTM's LSTM cells."""
    return [m for m in model.modules() if isinstance(m, (ConvLSTMCell, torch.nn.LSTMCell))]


# Compiled variants one cell may need: zero state or not, with gradients or not (validation),
# the training and the evaluation batch size. Dynamo keeps them per code object, shared by
# all cells of a class, and silently falls back to eager code past its cache limit (8).
VARIANTS_PER_CELL = 8


def compile_cells(model: torch.nn.Module, backend: str = "inductor") -> int:
    """torch.compile each recurrent cell in place; returns how many.

    A cell sees the same shapes at every time step and every sequence length, so curriculum
    stages, validation and test reuse its compiled code (tests/test_compile.py counts the
    graphs): compiling the whole unrolled model would compile again for every new length.
    """
    cells = recurrent_cells(model)
    limit = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = max(limit, VARIANTS_PER_CELL * len(cells))
    for cell in cells:
        cell.compile(backend=backend)
    return len(cells)
