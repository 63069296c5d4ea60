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

__all__ = ["get_model", "check_architecture", "count_parameters", "SequenceModel",
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


def check_architecture(cfg) -> None:
    """Raise NowcastError for an impossible architecture without allocating any weights."""
    get_model(cfg, device="meta")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
