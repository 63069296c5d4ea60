"""Wall time of `nowcast data inspect` and `nowcast data import` on each folder of the shared
`radar_raw/` (issue 54's target: within 10 s on 2 cores), each a fresh process as a user runs
it (Python, pysteps and h5py imports included), with native files read in forked processes
(readers.read_processes, the default) and in one process, in the same run. Needs the shared
radar data; prints a Markdown table and the machine's load before and after.

    python benchmarks/radar_import.py [--repeats 2] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = """import sys
from nowcast.data.radar import readers
readers.READ_PROCESSES = int(sys.argv[1])
from nowcast.cli import main
sys.exit(main(sys.argv[2:]))"""


def timed(processes: int, args: list[str], out: Path) -> float:
    out.unlink(missing_ok=True)  # an import never overwrites
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, str(processes), *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("NOWCAST_DATA_DIR", "../shared/data"))
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs a cell")
    args = parser.parse_args()
    raw = Path(args.data) / "radar_raw"
    folders = sorted(p for p in raw.glob("*/*") if p.is_dir()) + sorted(
        p for p in raw.glob("*") if p.is_dir() and not any(q.is_dir() for q in p.iterdir()))
    if not folders:
        print(f"no radar_raw folders under {args.data}", file=sys.stderr)
        return 2
    print(f"load average before: {os.getloadavg()[0]:.2f}; CPUs: {len(os.sched_getaffinity(0))}")
    print("| folder | files | inspect, forked (s) | inspect, one process (s) | import, forked (s) | import, one process (s) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            out = Path(tmp) / "out.npz"
            cells = []
            for command in (["data", "inspect", str(folder)], ["data", "import", str(folder), "--out", str(out)]):
                for processes in (4, 1):
                    best = min(timed(processes, command, out) for _ in range(args.repeats))
                    cells.append(f"{best:.1f}")
            print(f"| {folder.relative_to(raw)} | {sum(1 for _ in folder.iterdir())} | {' | '.join(cells)} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
