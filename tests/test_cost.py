"""What training costs (issue 55 item 2): FLOP of one step counted by nowcast.cost (which the
throughput benchmark uses too), recorded in env.json with the sequences seen."""

from __future__ import annotations

import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from nowcast.config import load_config
from nowcast.cost import step_flop, training_frame_shape
from nowcast.experiment import run_experiment
from nowcast.losses import training_loss
from nowcast.models import get_model
from nowcast.runtime import Runtime
from nowcast.training import optimisation_step


def test_one_sequence_times_the_batch_is_the_whole_batch_counted(tiny_values):
    cfg = load_config(values=tiny_values)
    model = get_model(cfg, frame_shape=(32, 32))
    frames = torch.rand(cfg.batch_size, cfg.k_in + cfg.k_out, 32, 32)
    counter = FlopCounterMode(display=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with counter:
        optimisation_step(model, model, torch.optim.SGD(model.parameters(), lr=0.0),
                          training_loss(cfg), Runtime(torch.device("cpu"), "fp32", False),
                          frames[:, :cfg.k_in], frames[:, cfg.k_in:])
    whole = counter.get_total_flops()
    assert whole > 0 and step_flop(cfg, (32, 32), model) == whole
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert step_flop(load_config(values=dict(tiny_values, batch_size=4)), (32, 32)) * 2 == whole


def test_radar_runs_are_counted_on_their_crops():
    cfg = load_config(values=dict(protocol="knmi-30-60", crop_size=64, stride=1, hidden_sizes=[4]))
    assert training_frame_shape(cfg, (191, 175)) == (64, 64)


def test_a_run_records_its_cost(tiny_values):
    cfg = load_config(values=dict(tiny_values, job_id="cost"))
    env = json.loads((run_experiment(cfg, progress=False) / "env.json").read_text())
    per_step = step_flop(cfg, (32, 32))
    assert env["flop_per_step"] == per_step and env["steps"] == 8
    assert env["train_flop"] == per_step * env["steps"]
    assert env["sequences_seen"] == cfg.batch_size * env["steps"]
    assert env["cost_recorded"] == "at training" and env["cpu_threads"] >= 1


