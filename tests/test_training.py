"""Training: bit-identical repeats, resume = uninterrupted, scheduled sampling, curriculum, checkpoints."""

import json
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch

from conftest import AUTO_PRECISION
from nowcast.config import load_config
from nowcast.experiment import run_experiment
from nowcast.stopping import Preempted
from nowcast.training import TrainResult, teacher_mask, teacher_probability


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_same_params_give_bit_identical_results(tiny_values):
    """Defect 9: seeds everywhere; on CPU the same params give the same bits."""
    a = run_experiment(load_config(values=dict(tiny_values, job_id="a")), progress=False)
    b = run_experiment(load_config(values=dict(tiny_values, job_id="b")), progress=False)
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert ma["mean"] == mb["mean"] and ma["losses"] == mb["losses"]
    for k, v in _weights(a / "model.pt").items():
        assert torch.equal(v, _weights(b / "model.pt")[k]), k
    c = run_experiment(load_config(values=dict(tiny_values, job_id="c", seed=1)), progress=False)
    assert json.loads((c / "metrics.json").read_text())["losses"] != ma["losses"]


@pytest.mark.parametrize("schedule", [{}, dict(num_epochs=4, step_size=2, gamma=0.5),
                                      dict(num_epochs=3, scheduler="onecycle")])
def test_resume_continues_to_the_same_result(tiny_values, schedule):
    """Defect 11: checkpoints hold everything needed; an interrupted run ends where an
    uninterrupted one does. The second schedule decays every 2 epochs: one that resume can
    get wrong (with step_size 1 a StepLR rebuilt from nothing decays the restored rate just
    the same, so dropping the scheduler's state would pass); the third is stepped every step
    (a one cycle rebuilt from nothing would start its cycle again)."""
    values = dict(tiny_values, scheduled_sampling=True, ss_decay_steps=6, **schedule)
    whole = run_experiment(load_config(values=dict(values, job_id="whole")), progress=False)
    with pytest.raises(Preempted):
        run_experiment(load_config(values=dict(values, job_id="cut")), progress=False, stop_after_steps=5)
    running = whole.parent / ".running-cut"
    assert (running / "checkpoint.pt").is_file()
    assert json.loads((running / "status.json").read_text())["status"] == "preempted"  # resumable, not failed
    resumed = run_experiment(load_config(values=dict(values, job_id="cut")), progress=False)
    assert not running.exists()
    assert json.loads((resumed / "status.json").read_text())["attempts"] == 2
    for name in ("history.csv", "batch_losses.csv"):
        a = (whole / name).read_text().splitlines()
        b = (resumed / name).read_text().splitlines()
        assert [r.rsplit(",", 1)[0] for r in a] == [r.rsplit(",", 1)[0] for r in b]  # all but seconds
    assert (whole / "batch_losses.csv").read_text() == (resumed / "batch_losses.csv").read_text()
    for k, v in _weights(whole / "model.pt").items():
        assert torch.equal(v, _weights(resumed / "model.pt")[k]), k


def test_model_pt_is_safe_and_complete(tiny_values):
    path = run_experiment(load_config(values=dict(tiny_values, job_id="m")), progress=False)
    ckpt = torch.load(path / "model.pt", weights_only=True)  # no arbitrary unpickling
    assert {"model", "last_model", "config", "optimizer", "scheduler", "step", "rng", "best_val"} <= set(ckpt)
    assert ckpt["config"]["hidden_sizes"] == [8, 8] and ckpt["step"] == 8
    assert not (path / "checkpoint.pt").exists()


def test_scheduled_sampling_schedule_is_per_sample_and_per_step():
    """Defect 5: a probability that follows a stated schedule, drawn per sample and step."""
    cfg = load_config(values=dict(scheduled_sampling=True, ss_decay_steps=100, ss_min=0.2))
    assert teacher_probability(cfg, 0) == 1.0
    assert teacher_probability(cfg, 50) == pytest.approx(0.6)
    assert teacher_probability(cfg, 100) == teacher_probability(cfg, 10_000) == pytest.approx(0.2)
    mask = teacher_mask(cfg, 50, 4000, 10, "cpu")
    assert mask.shape == (4000, 9)
    assert mask.float().mean().item() == pytest.approx(0.6, abs=0.02)
    assert len({tuple(r) for r in mask[:50].tolist()}) > 10           # samples differ
    late = teacher_mask(cfg, 10_000, 4000, 10, "cpu")
    assert late.float().mean().item() == pytest.approx(0.2, abs=0.02)  # never collapses to all zeros
    assert torch.equal(mask, teacher_mask(cfg, 50, 4000, 10, "cpu"))  # reproducible per step
    assert teacher_mask(load_config(), 0, 4, 10, "cpu") is None       # off by default


def test_curriculum_stages_and_lr_restart(tiny_values):
    values = dict(tiny_values, curriculum=[1, 2], k_in=2, k_out=2, num_epochs=2, gamma=0.5,
                  restart_lr_per_stage=True, job_id="cur")
    path = run_experiment(load_config(values=values), progress=False)
    rows = [line.split(",") for line in (path / "history.csv").read_text().splitlines()[1:]]
    assert [(r[0], r[2]) for r in rows] == [("1", "2"), ("1", "2"), ("2", "4"), ("2", "4")]
    assert [float(r[4]) for r in rows] == [0.01, 0.005, 0.01, 0.005]


def test_onecycle_is_stepped_every_step_over_the_whole_plan(tiny_values):
    """scheduler onecycle: OneCycleLR over the plan's steps, stepped after every optimiser step
    (not at epochs' ends): history's lr at step s is the rate of the s-th step."""
    values = dict(tiny_values, num_epochs=3, val_every=1, scheduler="onecycle", job_id="oc")
    path = run_experiment(load_config(values=values), progress=False)
    rows = [line.split(",") for line in (path / "history.csv").read_text().splitlines()[1:]]
    logged = {int(r[3]): float(r[4]) for r in rows}
    weight = torch.zeros(1, requires_grad=True)
    reference = torch.optim.lr_scheduler.OneCycleLR(torch.optim.Adam([weight]), max_lr=0.01,
                                                    total_steps=len(logged))
    expected = {}
    for step in range(1, len(logged) + 1):
        expected[step] = reference.get_last_lr()[0]
        reference.optimizer.step()
        reference.step()
    assert len(logged) == 12 and logged == pytest.approx(expected, rel=1e-12)
    assert max(logged.values()) == pytest.approx(0.01, rel=0.01) and logged[12] < 1e-4


def test_early_stopping_stops(tiny_values):
    values = dict(tiny_values, num_epochs=30, initial_lr=1e-9, early_stopping=1, job_id="es",
                  scheduler="none")
    path = run_experiment(load_config(values=values), progress=False)
    env = json.loads((path / "env.json").read_text())
    assert env["stopped_early"] and env["steps"] < 30 * 4


def test_gifs_come_from_the_split_they_name(tiny_values):
    """Defect 3: test.gif shows a test sequence, train.gif a training one."""
    import imageio.v3 as iio

    from nowcast.data import get_data
    cfg = load_config(values=dict(tiny_values, job_id="gif"))
    path = run_experiment(cfg, progress=False)
    data = get_data(cfg)
    first = {s: iio.imread(path / f"{s}.gif", index=0)[..., 0] for s in ("train", "test")}
    scale = 192 // 32
    for split, seq in (("test", data.split("test").frames[0]), ("train", data.train_batch(0, 1, 6).frames[0])):
        left = first[split][22:22 + 32 * scale:scale, 0:32 * scale:scale]
        np.testing.assert_allclose(left / 255.0, seq[0], atol=1 / 255 + 1e-6)
    assert not np.array_equal(first["train"], first["test"])
    n_frames = iio.improps(path / "test.gif").shape[0]
    assert n_frames == 6


def test_diverged_training_fails_the_run_clearly(tiny_values, monkeypatch):
    import nowcast.training
    from nowcast.errors import NowcastError
    real = nowcast.training.training_loss

    def exploding(cfg):  # a loss that turns NaN, as a diverging run's does
        loss = real(cfg)
        return lambda logits, target, mask=None: loss(logits, target, mask) * float("nan")
    monkeypatch.setattr(nowcast.training, "training_loss", exploding)
    cfg = load_config(values=dict(tiny_values, job_id="nan"))
    with pytest.raises(NowcastError, match=r"training diverged: the loss is nan at step 1 "):
        run_experiment(cfg, progress=False)
    status = json.loads((Path(tiny_values["results_dir"]) / "nan" / "status.json").read_text())
    assert status["status"] == "failed" and "diverged" in status["error"]
    assert not (Path(tiny_values["results_dir"]) / "nan" / "model.pt").exists()


def test_time_budget_stops_at_a_step_boundary_and_completes(tiny_values):
    """A budget too small for a second step: one step, a validation, the test split, a complete
    folder that says why it stopped (no timing in the assertion: one step is always taken)."""
    path = run_experiment(load_config(values=dict(tiny_values, job_id="budget", time_budget_min=1e-9)),
                          progress=False)
    env = json.loads((path / "env.json").read_text())
    assert env["stopped"] == "time_budget" and env["steps"] == 1 and env["time_budget_min"] == 1e-9
    assert json.loads((path / "status.json").read_text())["status"] == "completed"
    history = (path / "history.csv").read_text().splitlines()
    assert len(history) == 2 and history[1].split(",")[3] == "1"   # one validation, after step 1
    assert json.loads((path / "metrics.json").read_text())["mean"]["mse_frame"] > 0


def test_a_resumed_run_has_only_what_is_left_of_its_time_budget(tiny_values):
    """time_budget_min is of the run, over all its attempts: a run resumed after its earlier
    attempts trained longer than the budget takes one step and stops on its budget (it used
    to start a whole new budget, and trained to the end of its plan). No timing: the earlier
    attempt's seconds are written into its checkpoint."""
    values = dict(tiny_values, job_id="budget-resume", time_budget_min=60.0)
    with pytest.raises(Preempted):
        run_experiment(load_config(values=values), progress=False, stop_after_steps=3)
    path = Path(tiny_values["results_dir"]) / ".running-budget-resume" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["train_seconds"] = 3600.0 + 1.0  # the first attempt had used up the hour
    torch.save(ckpt, path)
    resumed = run_experiment(load_config(values=values), progress=False)
    env = json.loads((resumed / "env.json").read_text())
    assert env["stopped"] == "time_budget" and env["steps"] == 4
    # env.json's wall time is the run's (a report says "2-core CPU, N min" from it), not the
    # last attempt's
    assert env["wall_seconds"] > 3601.0 and env["train_seconds"] > 3601.0


def test_a_resumed_plan_line_says_what_is_left_of_the_budget():
    """The plan line of a resumed run names the budget spent before, and the ETA what is left."""
    from nowcast.progress import PlanClock
    lines: list[str] = []
    clock = PlanClock("r", "cpu", 100, 10, 1, 10, 8, start=50, budget_min=55, out=lines.append,
                      spent_s=30 * 60)
    clock.begin()
    assert "resuming at step 50; time budget 55 min (30 min of it spent before)" in lines[0]
    assert clock._budget(3600) == "; the time budget stops it after 25 min"
    assert clock._budget(60) == ""
    fresh = PlanClock("r", "cpu", 100, 10, 1, 10, 8, budget_min=55, out=lines.append)
    assert fresh._budget(3600) == "; the time budget stops it at 55 min"


def test_each_checkpoint_is_written_once(tiny_values, monkeypatch):
    """8 steps, checkpoint_every 3, a validation per 4-step epoch: checkpoints after steps 3, 4,
    6 and 8, none twice (the end saves again only what came after the loop's last save)."""
    import nowcast.training
    saved, real = [], nowcast.training.save_resume_state
    monkeypatch.setattr(nowcast.training, "save_resume_state",
                        lambda path, **state: (saved.append(state["step"]), real(path, **state)))
    run_experiment(load_config(values=dict(tiny_values, job_id="once")), progress=False)
    assert saved == [3, 4, 6, 8]
    saved.clear()  # stopped on its budget after step 1: the last validation and the reason saved
    run_experiment(load_config(values=dict(tiny_values, job_id="once-budget", time_budget_min=1e-9)),
                   progress=False)
    assert saved == [1]


def test_val_every_validates_between_epochs(tiny_values):
    """val_every=3 over 2 epochs of 4 steps: validations after steps 3, 6 and at the end (8)."""
    path = run_experiment(load_config(values=dict(tiny_values, job_id="val3", val_every=3)),
                          progress=False)
    steps = [int(r.split(",")[3]) for r in (path / "history.csv").read_text().splitlines()[1:]]
    assert steps == [3, 6, 8]


def test_plan_line_and_default_name(tiny_values, capsys):
    """A run says its plan on stdout before the first step (not only to a terminal), a bound
    after the first step and, after 3 more, how long the plan will take; a run given no name (a bare
    papermill call, an empty params file) is named for what it is, everywhere the name goes."""
    from nowcast.experiment import default_name
    assert default_name(load_config()) == "convlstm_ed-64x32x32x16-s2"
    assert default_name(load_config(values=dict(protocol="mmnist-10"))) == "convlstm_ed-64x32x32x16-s2-mmnist-10"
    path = run_experiment(load_config(values=dict(tiny_values, name="", job_id="plan")), progress=False)
    out = capsys.readouterr().out.splitlines()
    plan = [line for line in out if line.startswith("nowcast: convlstm_ed-8x8-s2: ")]
    assert plan[0] == ("nowcast: convlstm_ed-8x8-s2: 8 steps (2 epochs x 4 steps) x 8 sequences "
                       f"= 64 sequences on cpu ({AUTO_PRECISION})")
    # a first bound after the first step (a CPU step may take a minute), then the estimate
    assert len(plan) == 4 and plan[1].startswith("nowcast: convlstm_ed-8x8-s2: the first step "
                                                 "took ") and "at most " in plan[1]
    assert plan[2].startswith("nowcast: convlstm_ed-8x8-s2: estimated ")
    assert "for the plan (8 steps; " in plan[2] and "measured over steps 2-4" in plan[2]
    # validation is in the estimate (2 validations of the 8 validation sequences), and the
    # first one's measured time corrects it
    assert "; 2 validations of 8 sequences about " in plan[2]
    assert plan[3].startswith("nowcast: convlstm_ed-8x8-s2: the first validation took ")
    for name in ("metrics.json", "status.json"):
        assert json.loads((path / name).read_text())["name"] == "convlstm_ed-8x8-s2"
    assert "name: convlstm_ed-8x8-s2" in (path / "params.yaml").read_text()


def test_val_subset_bounds_selection_and_the_train_column(tiny_values, monkeypatch):
    """val_subset: in-training validation on the first N validation sequences; the train
    column on N training sequences; the validation and test columns on their whole splits."""
    import nowcast.scoring as scoring
    from nowcast.data import get_data
    from nowcast.models import get_model
    from nowcast.runtime import resolve_runtime
    from nowcast.training import Trainer
    cfg = load_config(values=dict(tiny_values, job_id="sub", val_subset=3, train_sequences=16))
    data = get_data(cfg)
    trainer = Trainer(cfg, data, get_model(cfg), resolve_runtime(cfg),
                      Path(tiny_values["results_dir"]), progress=False)
    assert np.array_equal(trainer.val.frames, data.split("val").frames[:3])
    assert len(data.split("val").frames) == 8
    seen, original = [], scoring._evaluate
    monkeypatch.setattr(scoring, "_evaluate", lambda cfg, model, batch, *args, **kw: (
        seen.append(len(batch.frames)), original(cfg, model, batch, *args, **kw))[1])
    run_experiment(cfg, progress=False)
    assert seen == [8, 3, 8]  # test (whole), train column (3 sequences), validation (whole)


def test_steady_rate_leaves_the_first_step_out():
    # 10 steps of 64 in 10 s, 1 s of it validation, 4 s the first step (compilation)
    result = TrainResult(sequences=640, train_seconds=10.0, validation_seconds=1.0,
                         first_step_seconds=4.0)
    assert result.sequences_per_s == 640 / 9
    assert result.steady_sequences_per_s(64) == 576 / 5
    assert TrainResult(sequences=64, train_seconds=2.0, first_step_seconds=2.0).steady_sequences_per_s(64) is None


def test_precision_auto_takes_the_cpus_bf16_units(monkeypatch):
    """auto: bf16 autocast with channels_last weights on a CPU with bf16 units, fp32 elsewhere;
    an explicit precision is kept; the mode says which (env.json)."""
    import nowcast.runtime as runtime
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    fast = runtime.resolve_runtime(load_config(values=dict(device="cpu")))
    assert (fast.precision, fast.channels_last, fast.compile, fast.mode) == ("bf16", True, False, "fast")
    ref = runtime.resolve_runtime(load_config(values=dict(device="cpu", precision="fp32")))
    assert (ref.precision, ref.channels_last, ref.mode) == ("fp32", False, "reference")
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    plain = runtime.resolve_runtime(load_config(values=dict(device="cpu")))
    assert (plain.precision, plain.channels_last, plain.mode) == ("fp32", False, "reference")
    model = torch.nn.Conv2d(2, 4, 3)
    assert fast.place(model).weight.is_contiguous(memory_format=torch.channels_last)


def test_tensorboard_events_mirror_the_history(tiny_values):
    """Every run writes TensorBoard event files into its folder: the history's losses and
    learning rate at its steps, every batch loss, and the validation forecast as images."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    path = run_experiment(load_config(values=dict(tiny_values, job_id="tb")), progress=False)
    events = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0}).Reload()
    history = [row.split(",") for row in (path / "history.csv").read_text().splitlines()]
    head, rows = history[0], history[1:]
    for column, tag in (("train_loss", "loss/train"), ("val_loss", "loss/validation"), ("lr", "learning_rate")):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        want = [(int(r[head.index("step")]), float(r[head.index(column)])) for r in rows]
        assert [s for s, _ in logged] == [s for s, _ in want]
        assert np.allclose([v for _, v in logged], [v for _, v in want], rtol=1e-6), tag
    batch = [r.split(",") for r in (path / "batch_losses.csv").read_text().splitlines()[1:]]
    logged = [(e.step, e.value) for e in events.Scalars("loss/batch")]
    assert [s for s, _ in logged] == [int(r[0]) for r in batch] == list(range(1, 9))
    assert np.allclose([v for _, v in logged], [float(r[2]) for r in batch], rtol=1e-6)
    assert len(events.Scalars("sequences_per_s")) == len(rows)
    # the images of the last validation: the first validation sequence's inputs and target,
    # and the forecast of the weights at that step (model.pt's last_model: the run's end)
    from nowcast.data import get_data
    from nowcast.forecast import forecast
    from nowcast.models import get_model
    from nowcast.runtime import resolve_runtime
    cfg = load_config(values=dict(tiny_values, job_id="tb"))
    seq = get_data(cfg).split("val").frames[0]
    model = get_model(cfg)
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True)["last_model"])
    with torch.no_grad():
        pred = forecast(model.eval(), torch.as_tensor(seq[None, :3]), 3, resolve_runtime(cfg))[0].numpy()
    for tag, frames in (("inputs", seq[:3]), ("target", seq[3:]), ("prediction", pred)):
        image = events.Images(f"validation/{tag}")[-1]
        assert image.step == 8
        shown = imageio.v3.imread(image.encoded_image_string).astype(np.float64)[..., 0] / 255
        assert np.abs(shown - np.concatenate(list(frames), axis=-1)).max() <= 2 / 255, tag  # 8 bits
    assert np.abs(pred - seq[3:]).max() > 0.1   # the prediction and the target differ


def test_without_tensorboard_one_notice_and_nothing_else(tmp_path, monkeypatch, capsys):
    from nowcast import board
    from nowcast.errors import MissingDependency
    def missing(name, extra):
        raise MissingDependency(name, extra, "No module named 'tensorboard'")
    monkeypatch.setattr(board, "optional_import", missing)
    b = board.Board(tmp_path, out=print)
    b.history({"step": 1, "train_loss": 1.0, "val_loss": 1.0, "lr": 0.1}, 2.0)
    b.close()
    assert capsys.readouterr().out.startswith("nowcast: no TensorBoard curves (")
    assert list(tmp_path.iterdir()) == []


def test_scoring_batches_are_bounded_in_memory():
    """Whole radar frames are scored in batches whose largest activation stays under
    SCORING_BYTES; small frames keep the batch of at least 32."""
    from nowcast.models import get_model
    from nowcast.scoring import SCORING_BYTES, scoring_batch
    root = Path(__file__).resolve().parents[1]
    seed = load_config(root / "params" / "seed-best-radar.yaml")
    model = get_model(seed, device="meta", frame_shape=(96, 96))
    n = scoring_batch(seed, model, (40, 18, 191, 175))
    assert n == 7 and n * 4 * 64 * 191 * 175 * 4 <= SCORING_BYTES
    patched = load_config(root / "params" / "cpu" / "knmi-30-60-patch4.yaml")
    assert scoring_batch(patched, get_model(patched, device="meta", frame_shape=(96, 96)), (191, 175)) == 32
    assert scoring_batch(load_config(values=dict(batch_size=64)), model, (64, 64)) == 64


def test_plan_counts_its_validations():
    from nowcast.training import Plan, Stage
    for val_every in (None, 1, 3, 4, 5):
        for epochs, per_epoch in ((1, 4), (2, 4), (3, 5)):
            plan = Plan([Stage(3, 3)], epochs, per_epoch, val_every)
            for start in range(plan.total + 1):
                assert plan.validations(start) == sum(map(plan.validates, range(start, plan.total)))
