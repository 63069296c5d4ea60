"""The first guesses a residual radar model corrects, scored alone on KNMI-30/60 by the scorer
of every run: persistence, pysteps' Lucas-Kanade extrapolation (the protocol's baseline) and
nowcast's torch extrapolation (models/motion.py, `first_guess: extrapolation`), on the
validation and the test windows, with the seconds each took. Needs the shared radar data.

    python benchmarks/first_guess.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import time

from nowcast.baselines import extrapolation, persistence, torch_extrapolation, verify_radar
from nowcast.config import load_config
from nowcast.data.radar import RadarData
from nowcast.verification import radar_facts


GUESSES = {"persistence": persistence, "pysteps LK extrapolation": extrapolation,
           "torch extrapolation (motion.py)": torch_extrapolation}


def _num(value, digits: int) -> str:
    # None: no event at the threshold in these windows (the validation events are nearly dry)
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="", help="the shared data folder (default: found)")
    args = parser.parse_args()
    data = RadarData(load_config(values=dict(protocol="knmi-30-60", data_dir=args.data_dir)))
    print("| first guess | windows | CSI 20 dBZ | FSS 20 dBZ, 20 km | MAE dBZ | CSI 20 per lead | s |")
    print("|---|---|---|---|---|---|---|")
    for which in ("val", "test"):
        for name, guess in GUESSES.items():
            started = time.perf_counter()
            scores = verify_radar(lambda x: guess(x, data.k_out), data, which)
            seconds = time.perf_counter() - started
            facts = radar_facts(data, scores)
            mean, lead = facts["mean"], facts["per_lead"]["csi_20"]
            cells = [_num(mean[key], 3) for key in ("csi_20", "fss_20_5", "mae_dbz")]
            print(f"| {name} | {which} {facts['n_sequences']} | {' | '.join(cells)} | "
                  f"{' '.join(_num(v, 2) for v in lead)} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
