"""How fast the command line answers: the wall time of `nowcast --help` and `nowcast status`
beside a bare `python -c pass`, in the same run (median of --repeats runs each).

    python benchmarks/cli_startup.py            # the table; the target: --help within 0.5 s
                                                # of the bare interpreter

A login node runs `nowcast status` every few seconds (`--watch`): it must not import torch or
the model zoo (tests/test_cli.py asserts that on sys.modules).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {"python -c pass": ["-c", "pass"],
            "nowcast --help": ["-m", "nowcast", "--help"],
            "nowcast status": ["-m", "nowcast", "status", "--results", "{empty}"]}


def wall(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *argv], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as empty:
        rows = {name: wall([a.format(empty=empty) for a in cmd], args.repeats)
                for name, cmd in COMMANDS.items()}
    bare = rows["python -c pass"]
    print("| command | wall time (median) | over the bare interpreter |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| `{name}` | {seconds:.3f} s | {seconds - bare:+.3f} s |")
    print(json.dumps({"repeats": args.repeats, **{k: round(v, 4) for k, v in rows.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
