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
from nowcast.forecast import forecast
from nowcast.losses import make_loss
from nowcast.models import compile_cells, get_model, recurrent_cells
from nowcast.options import SPEEDUP_NAMES
from nowcast.runtime import Runtime
from nowcast.training import optimisation_step

ARCHITECTURES = {"convlstm_ed": {}, "encoder_forecaster": {"stride": 1}, "predrnn": {"stride": 1},
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


def test_cells_compile_for_static_shapes():
    """Each cell shape its own graph: torch's default turns a second shape into a symbolic graph
    for every shape, which on an H200 recompiled the seed model's cell for minutes."""
    torch._dynamo.reset()
    _, model = build("convlstm_ed")
    symbolic = []

    def backend(gm, example_inputs):
        symbolic.append(any(isinstance(a, torch.SymInt) or (isinstance(a, torch.Tensor) and any(
            isinstance(s, torch.SymInt) for s in a.shape)) for a in example_inputs))
        return gm.forward
    compile_cells(model, backend=backend)
    for batch in (2, 4):  # cells of two sizes, each at two batch sizes
        model(torch.rand(batch, 3, 32, 32), 3)
    assert len(symbolic) >= 2 * len(recurrent_cells(model)) and not any(symbolic)


def test_forecasts_run_eager_after_training_compiled():
    """Validation, scoring and figures reuse no compiled graph and compile none: a forecast's
    batch size (a last partial batch, a figure's few sequences) would compile new ones."""
    torch._dynamo.reset()
    cfg, model = build("convlstm_ed")
    compile_cells(model, backend="eager")
    runtime = Runtime(torch.device("cpu"), "fp32", True, False)
    frames = torch.rand(cfg.batch_size, 6, 32, 32)
    optimisation_step(model, model, torch.optim.Adam(model.parameters()), make_loss(cfg.loss),
                      runtime, frames[:, :3], frames[:, 3:])
    before = counters["stats"]["unique_graphs"]
    assert before > 0
    out = forecast(model, torch.rand(3, 3, 32, 32), 2, runtime)
    assert out.shape == (3, 2, 32, 32) and counters["stats"]["unique_graphs"] == before


def test_every_speedup_compiles_without_a_graph_break_and_keeps_the_step():
    """The seed's configuration with every rewrite of models/speedups.py, its cells (and the
    batched first branch) compiled through AOT autograd (what inductor builds on, the custom
    LayerNorm backward included): no graph break, one graph per cell with zero_state, and the
    same training step as the eager model from the same weights."""
    torch._dynamo.reset()
    values = dict(TINY, norm="layer", peephole="per_position", max_pool=True, stride=2,
                  hidden_sizes=[8, 8], filter_size=3, speedups=list(SPEEDUP_NAMES))
    cfg = load_config(values=without_unused(values))
    torch.manual_seed(0)
    eager, compiled = get_model(cfg), get_model(cfg)
    compiled.load_state_dict(eager.state_dict())
    for cell, args in cell_calls(compiled):
        explanation = torch._dynamo.explain(cell)(*args)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compile_cells(compiled, backend="aot_eager")
    runtime = Runtime(torch.device("cpu"), "fp32", True, False)
    frames = torch.rand(cfg.batch_size, 6, 32, 32)
    before = counters["stats"]["unique_graphs"]
    losses = [optimisation_step(m, m, torch.optim.Adam(m.parameters()), make_loss(cfg.loss), runtime,
                                frames[:, :3], frames[:, 3:]) for m in (eager, compiled)]
    # one graph per cell (zero_state: never a None state), the first cell's two (a batched
    # branch given, or its frame), and the batched branch's
    assert counters["stats"]["unique_graphs"] - before == len(recurrent_cells(compiled)) + 2
    torch.testing.assert_close(losses[1], losses[0])
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b, a, msg=name)


def test_simvp_compiles_its_one_pass():
    """SimVP has no recurrent cell: `compile: on` compiles its pass over k_in frames (one
    graph, no break), which trains to the eager step's loss and leaves forecasts eager."""
    torch._dynamo.reset()
    cfg = load_config(values=without_unused(dict(TINY, architecture="simvp", hid_S=4, hid_T=8,
                                                 N_S=2, N_T=2)))
    torch.manual_seed(0)
    eager, compiled = get_model(cfg), get_model(cfg)
    compiled.load_state_dict(eager.state_dict())
    explanation = torch._dynamo.explain(compiled.once)(torch.rand(2, 3, 1, 32, 32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()
    assert compile_cells(compiled, backend="eager") == 1
    runtime = Runtime(torch.device("cpu"), "fp32", True, False)
    frames = torch.rand(cfg.batch_size, 6, 32, 32)
    before = counters["stats"]["unique_graphs"]
    losses = [optimisation_step(m, m, torch.optim.Adam(m.parameters()), make_loss(cfg.loss),
                                runtime, frames[:, :3], frames[:, 3:]) for m in (eager, compiled)]
    assert counters["stats"]["unique_graphs"] > before  # the pass ran compiled
    assert float(losses[0]) == pytest.approx(float(losses[1]), rel=1e-6)
    before = counters["stats"]["unique_graphs"]
    out = forecast(compiled, torch.rand(3, 3, 32, 32), 2, runtime)
    assert out.shape == (3, 2, 32, 32) and counters["stats"]["unique_graphs"] == before
