"""What only CUDA can show (skipped without a GPU; run by `benchmarks/gpu_job.py gpu-tests`).

The tolerances are stated once, in nowcast/runtime.py: the fast mode (bf16 autocast +
torch.compile) follows the reference mode within FAST_VS_REFERENCE_RTOL and repeats within
FAST_REPEAT_RTOL (relative difference of the mean training loss over 30 steps); the reference
mode is bit-identical on a rerun and across a resume.
"""

from __future__ import annotations

import csv

import pytest
import torch

from nowcast.config import load_config
from nowcast.experiment import run_experiment
from nowcast.models import get_model
from nowcast.options import SPEEDUP_NAMES
from nowcast.runtime import FAST_REPEAT_RTOL, FAST_VS_REFERENCE_RTOL, set_determinism
from nowcast.stopping import Preempted

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

STEPS = 30
GPU_RUN = dict(name="gpu", digits="auto", num_digits=2, image_size=64, k_in=5, k_out=5,
               hidden_sizes=[32, 32, 32, 16], filter_size=5, norm="group", peephole="per_channel",
               max_pool=False, batch_size=16, train_sequences=16 * STEPS, num_epochs=1,
               val_sequences=32, test_sequences=32, checkpoint_every=10, device="cuda",
               scheduled_sampling=True, ss_decay_steps=20)
REFERENCE = dict(precision="fp32", compile="off")
FAST = dict(precision="bf16", compile="on")


def losses(folder) -> list[float]:
    with open(folder / "batch_losses.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def run(tmp_path, job_id: str, **values):
    cfg = load_config(values=dict(GPU_RUN, results_dir=str(tmp_path / "results"), job_id=job_id, **values))
    return run_experiment(cfg, progress=False)


def mean_rel(a: list[float], b: list[float]) -> float:
    return abs(sum(a) / len(a) - sum(b) / len(b)) / abs(sum(b) / len(b))


def test_fast_follows_reference_within_its_tolerance(tmp_path):
    reference = losses(run(tmp_path, "ref", **REFERENCE))
    fast = losses(run(tmp_path, "fast", **FAST))
    assert len(reference) == len(fast) == STEPS
    assert mean_rel(fast, reference) <= FAST_VS_REFERENCE_RTOL


def test_fast_repeats_within_its_tolerance(tmp_path):
    a, b = losses(run(tmp_path, "a", **FAST)), losses(run(tmp_path, "b", **FAST))
    assert mean_rel(a, b) <= FAST_REPEAT_RTOL


def test_reference_is_bit_identical_on_rerun(tmp_path):
    a, b = run(tmp_path, "a", **REFERENCE), run(tmp_path, "b", **REFERENCE)
    assert (a / "batch_losses.csv").read_text() == (b / "batch_losses.csv").read_text()
    wa = torch.load(a / "model.pt", weights_only=True)["model"]
    wb = torch.load(b / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_reference_resume_is_bit_identical(tmp_path):
    whole = run(tmp_path, "whole", **REFERENCE)
    cfg = load_config(values=dict(GPU_RUN, results_dir=str(tmp_path / "results"), job_id="cut", **REFERENCE))
    with pytest.raises(Preempted):
        run_experiment(cfg, progress=False, stop_after_steps=STEPS // 2 + 1)
    resumed = run_experiment(cfg, progress=False)
    assert (whole / "batch_losses.csv").read_text() == (resumed / "batch_losses.csv").read_text()
    wa = torch.load(whole / "model.pt", weights_only=True)["model"]
    wb = torch.load(resumed / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("speedup", [s for s in SPEEDUP_NAMES if s != "cuda_graphs"])
def test_each_speedup_computes_the_seed_models_function_on_cuda(speedup):
    """tests/test_speedups.py on CUDA's kernels (cuDNN's max-pool ties, the split reduction):
    fp32 eager, no TF32, the seed's architecture, from the same weights."""
    set_determinism(0, False)  # max-pool's CUDA backward has no deterministic kernel flag
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    values = dict(hidden_sizes=[16, 16, 16, 8], filter_size=5, stride=2, max_pool=True,
                  transpose=True, norm="layer", bias=False, peephole="per_position",
                  image_size=64, k_in=4, k_out=4, loss="bce")
    models = []
    for speedups in ([], [speedup]):
        torch.manual_seed(0)
        models.append(get_model(load_config(values=dict(values, speedups=speedups)), device="cuda"))
    models[1].load_state_dict(models[0].state_dict())
    x = torch.rand(8, 4, 64, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    outs = []
    for model in models:
        out = model(x, 4)
        torch.nn.functional.binary_cross_entropy_with_logits(out, x).backward()
        outs.append((out, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
