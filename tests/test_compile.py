"""torch.compile, checked where no GPU is needed: each architecture's compiled step (its
recurrent cell) has no graph break, and a new sequence length (the next curriculum stage)
compiles nothing new. Dynamo's own tracing is used (backend "eager": no code generation),
so this runs in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from conftest import TINY
from nowcast.config import load_config, without_unused
from nowcast.losses import make_loss
from nowcast.models import compile_cells, get_model, recurrent_cells
from nowcast.runtime import Runtime
from nowcast.training import optimisation_step

ARCHITECTURES = {"convlstm_ed": {}, "encoder_forecaster": {"stride": 1},
                 "fc_lstm": {"hidden_sizes": [32, 32]}}


def build(architecture: str):
    # TINY's convolution options mean nothing to fc_lstm: null them as a stored config would be
    cfg = load_config(values=without_unused(dict(TINY, architecture=architecture,
                                                 **ARCHITECTURES[architecture])))
    torch.manual_seed(0)
    return cfg, get_model(cfg)


def cell_calls(model) -> list[tuple]:
    """One (cell, args) per cell and kind of call (zero state or not), from a forward pass."""
    seen: dict = {}

    def hook(module, args, output):
        seen.setdefault((id(module), args[1] is None if len(args) > 1 else True), (module, args))
    handles = [cell.register_forward_hook(hook) for cell in recurrent_cells(model)]
    model(torch.rand(2, 3, 32, 32), 3)
    for h in handles:
        h.remove()
    return list(seen.values())


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_compiled_step_has_no_graph_break(architecture):
    _, model = build(architecture)
    calls = cell_calls(model)
    assert len(calls) > len(recurrent_cells(model))  # every cell, some with zero and carried state
    for cell, args in calls:
        explanation = torch._dynamo.explain(cell)(*args)
        assert explanation.graph_break_count == 0, (type(cell).__name__, explanation.break_reasons)
        assert explanation.graph_count == 1


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_a_new_sequence_length_compiles_nothing(architecture):
    torch._dynamo.reset()
    cfg, model = build(architecture)
    assert compile_cells(model, backend="eager") == len(recurrent_cells(model))
    optimizer = torch.optim.Adam(model.parameters())
    runtime = Runtime(torch.device("cpu"), "fp32", True, False)
    graphs = []
    for length in (3, 5):  # two curriculum stages
        frames = torch.rand(cfg.batch_size, 2 * length, 32, 32)
        before = counters["stats"]["unique_graphs"]
        optimisation_step(model, model, optimizer, make_loss(cfg.loss), runtime,
                          frames[:, :length], frames[:, length:])
        graphs.append(counters["stats"]["unique_graphs"] - before)
    assert graphs[0] > 0 and graphs[1] == 0
