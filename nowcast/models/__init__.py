"""Model registry: get_model(config) builds the network a params set names.

| architecture        | module         | what it is                                              |
|---------------------|----------------|---------------------------------------------------------|
| convlstm_ed         | convlstm_ed.py | the seed's down/up-sampling ConvLSTM stack, autoregressive |
| encoder_forecaster  | forecaster.py  | the thesis's encoder + conditional forecaster (Shi et al.)  |
| fc_lstm             | forecaster.py  | FC-LSTM encoder-forecaster baseline on flattened frames |
| predrnn             | predrnn.py     | PredRNN's ST-LSTM stack, M zig-zagging (Wang et al. 2017) |
| simvp               | simvp.py       | SimVP's encoder - translator (gSTA/TAU/IncepU) - decoder, recurrent-free |

Every builder passes `activation` (the cells' candidate/output nonlinearity) and `output`
(how the raw output becomes frames, base.OUTPUTS, stored as `model.output`). A builder gets the
size of the frames its cells see, and their channels: with `patch_size` p the frames are folded
into p*p channels at a p-th of the size (base.to_patches), which get_model sets as
`model.patch_size`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..errors import NowcastError, first_line
from ..options import NOMINAL_SIZE
from .base import OUTPUTS, SequenceModel, to_frames
from .cell import ConvLSTMCell, FCLSTMCell
from .convlstm_ed import ConvLSTMED, total_downsampling
from .forecaster import FCLSTM, EncoderForecaster, conv_encoder_forecaster
from .predrnn import PredRNN, STLSTMCell
from .simvp import SimVP
from .speedups import apply_speedups

__all__ = ["get_model", "model_size", "downsampling", "check_architecture", "check_frame_size", "count_parameters", "compile_cells", "SequenceModel",
           "ConvLSTMCell", "FCLSTMCell", "ConvLSTMED", "EncoderForecaster", "FCLSTM", "PredRNN",
           "STLSTMCell", "SimVP", "OUTPUTS", "apply_speedups",
           "to_frames"]


def _convlstm_ed(cfg, size: tuple[int, int], channels: int) -> SequenceModel:
    return ConvLSTMED(cfg.hidden_sizes, cfg.filter_sizes, size, stride=cfg.stride,
                      max_pool=cfg.max_pool, transpose=cfg.transpose, norm=cfg.norm,
                      norm_groups=cfg.norm_groups, peephole=cfg.peephole, bias=cfg.bias,
                      leaky_slope=cfg.leaky_slope, feed_upward=cfg.feed_upward,
                      fused_gates=cfg.fused_gates, in_channels=channels,
                      activation=cfg.activation, output=cfg.output)


def _encoder_forecaster(cfg, size: tuple[int, int], channels: int) -> SequenceModel:
    # max_pool, transpose and feed_upward are not read (options.USES refuses them): every state
    # keeps the frame's size, and each layer is fed the hidden state below
    return conv_encoder_forecaster(cfg.hidden_sizes, cfg.filter_sizes, size,
                                   stride=cfg.stride, norm=cfg.norm, norm_groups=cfg.norm_groups,
                                   peephole=cfg.peephole, bias=cfg.bias,
                                   leaky_slope=cfg.leaky_slope, fused_gates=cfg.fused_gates,
                                   in_channels=channels, activation=cfg.activation, output=cfg.output,
                                   head=cfg.head, head_width=cfg.head_width)


def _fc_lstm(cfg, size: tuple[int, int], channels: int) -> SequenceModel:
    # reads hidden_sizes, the frame size, activation and output only: the FC cell always has one
    # bias per gate and no peepholes (the thesis's Keras LSTM); patches mean nothing to a layer
    # that sees every pixel (options.USES refuses patch_size for it), so channels is 1
    return FCLSTM(cfg.hidden_sizes, size, activation=cfg.activation, output=cfg.output)


def _predrnn(cfg, size: tuple[int, int], channels: int) -> SequenceModel:
    # stride 1 only and no peepholes, leaky_slope, fused gates or head options (options.USES):
    # every state keeps the frame's size, and the ST-LSTM's gates read x, h and M, never c
    return PredRNN(cfg.hidden_sizes, cfg.filter_sizes, size, norm=cfg.norm,
                   norm_groups=cfg.norm_groups, bias=cfg.bias, in_channels=channels,
                   activation=cfg.activation, output=cfg.output)


def _simvp(cfg, size: tuple[int, int], channels: int) -> SequenceModel:
    # recurrent-free: hidden_sizes and activation are not read (its blocks are SimVP's own);
    # filter_size is the encoder/decoder kernel (OpenSTL's spatio_kernel_enc/dec)
    return SimVP(cfg.k_in, channels, cfg.hid_S, cfg.hid_T, cfg.N_S, cfg.N_T, cfg.translator,
                 cfg.mlp_ratio or 8.0, cfg.filter_sizes[0], output=cfg.output)


MODELS = {"convlstm_ed": _convlstm_ed, "encoder_forecaster": _encoder_forecaster,
          "fc_lstm": _fc_lstm, "predrnn": _predrnn, "simvp": _simvp}


def patch(cfg) -> int:
    """The patch side frames are folded by (1: none; null for fc_lstm, which takes none)."""
    return cfg.patch_size or 1


def downsampling(cfg) -> int:
    """The factor frames are padded to (models.base.padded): the patch side times 2 per
    down-sampling layer (model.frame_multiple)."""
    if cfg.architecture == "convlstm_ed":
        return patch(cfg) * total_downsampling(len(cfg.hidden_sizes), cfg.stride)
    if cfg.architecture == "simvp":  # the encoder halves the size every second block
        return patch(cfg) * 2 ** (cfg.N_S // 2)
    return patch(cfg)


def model_size(cfg, frame_shape: Optional[Sequence[int]] = None) -> tuple[int, int]:
    """(H, W) the size-bound layers (per-position peepholes, LayerNorm over [4C,H,W], FC-LSTM)
    are built for: the training frames (`frame_shape`: a data file's frames or crops, padded to
    the down-sampling as models.base.padded pads them), else Moving MNIST's image_size, else (the
    data not known yet: config checks) options.NOMINAL_SIZE, padded likewise."""
    if frame_shape is None and cfg.image_size:
        return cfg.image_size, cfg.image_size  # as given: a size the model cannot take is refused
    m = downsampling(cfg)
    h, w = (-(-int(s) // m) * m for s in (frame_shape or (NOMINAL_SIZE,) * 2)[-2:])
    return h, w


def get_model(cfg, device: str | torch.device = "cpu",
              frame_shape: Optional[Sequence[int]] = None) -> SequenceModel:
    """The model of `cfg`, built for training frames of `frame_shape` (see model_size); the
    size is kept as `model.frame_shape` (model.pt records it: a model is rebuilt at it)."""
    try:
        build = MODELS[cfg.architecture]
    except KeyError:
        raise NowcastError(f"unknown architecture '{cfg.architecture}' "
                           f"(choose from {', '.join(MODELS)})") from None
    size = model_size(cfg, frame_shape)
    p = patch(cfg)
    if size[0] % p or size[1] % p:  # image_size is taken as given (model_size)
        raise NowcastError(f"frame size {size[0]}x{size[1]} is not divisible by patch_size {p}")
    with torch.device(device):
        model = build(cfg, (size[0] // p, size[1] // p), p * p)
    model.patch_size = p
    if cfg.residual:
        model.make_residual(cfg.first_guess, cfg.correction or "free", cfg.k_out,
                            cfg.guess_sampling or "bicubic")
    model.frame_shape = size
    return apply_speedups(model, cfg.speedups)


def check_architecture(cfg, frame_shape: Optional[Sequence[int]] = None) -> SequenceModel:
    """Raise NowcastError for an impossible architecture without allocating any weights;
    returns the model built on the meta device (its sizes, no storage)."""
    return get_model(cfg, device="meta", frame_shape=frame_shape)


def check_frame_size(cfg, shape: Sequence[int], built: Optional[Sequence[int]] = None) -> None:
    """NowcastError when the model built for training frames `built` (see model_size) cannot
    run on frames of `shape` (size-bound layers), found by running it on the meta device: no
    weights, no data, no time."""
    model = get_model(cfg, device="meta", frame_shape=built)
    h, w = model_size(cfg, shape)  # padded as models.base.padded pads
    try:
        with torch.no_grad():
            model(torch.zeros(1, cfg.k_in, h, w, device="meta"), 1)
    except (RuntimeError, ValueError) as e:
        bh, bw = model.frame_shape
        raise NowcastError(f"the model (built for {bh}x{bw} training frames, peephole "
                           f"{cfg.peephole}, norm {cfg.norm}) cannot run on {shape[0]}x{shape[1]} "
                           f"frames ({first_line(e)[:120]})") from None


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def recurrent_cells(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules applied once per time step: ConvLSTM, ST-LSTM and FC-LSTM cells."""
    return [m for m in model.modules() if isinstance(m, (ConvLSTMCell, STLSTMCell, FCLSTMCell))]


# Compiled variants one cell may need: zero state or not, at the training batch size, and a
# few spare (forecasts without gradients run eager: forecast.forecast_logits). Dynamo keeps
# them per code object, shared by all cells of a class, and silently falls back to eager code
# past its cache limit (8).
VARIANTS_PER_CELL = 8


def compile_cells(model: torch.nn.Module, backend: str = "inductor") -> int:
    """torch.compile each recurrent cell in place, for static shapes; returns how many. A
    model without cells (SimVP) has its one pass (`once`: all k_in frames at a time, the same
    shapes for every pass of a rollout) compiled instead, counted as one.

    A cell sees the same shapes at every time step and every sequence length, so curriculum
    stages reuse its compiled code (tests/test_compile.py counts the graphs): compiling the
    whole unrolled model would compile again for every new length.

    Static shapes (dynamic=False): the cells of one model differ in channels and size, and
    torch's default turns a second shape into one symbolic graph for all of them. On an H200
    (benchmarks/RESULTS.md) that recompiled the seed model's cells at least 8 times and had not
    finished the first step after about 175 s; with static shapes the first step took 102 s
    and each step after it 148 ms.

    With speedups.cuda_graphs the mode is "reduce-overhead" (CUDA graphs, replayed each step);
    with batched_input_convs the first cell's input branch, run over all known frames at once
    outside the cells, is compiled too.
    """
    cells = recurrent_cells(model)
    limit = torch._dynamo.config.cache_size_limit
    torch._dynamo.config.cache_size_limit = max(limit, VARIANTS_PER_CELL * len(cells))
    how = dict(backend=backend, dynamic=False)
    if getattr(model, "cuda_graphs", False):
        how["mode"] = "reduce-overhead"
    for cell in cells:
        cell.compile(**how)
    if not cells and hasattr(model, "once"):
        model.once = torch.compile(model.once, **how)
        return 1
    if getattr(model, "batch_input_convs", False):  # not the branch module: cell 0 inlines it
        model.input_gates = torch.compile(model.input_gates, **how)
    return len(cells)
