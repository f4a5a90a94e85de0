"""Rank the frames of py-spy raw (collapsed-stack) files: `make profile` prints this.

    python scripts/profile_summary.py bench-results/profile/*.txt [--top 40] [--self]

Inclusive share of samples per frame (a frame counts once per sample), then the broker-call
path's parts (brokers/, services/app/sending.py) and the event loop, as shares of all samples.
`--self`: the innermost frame of each sample instead (where the time is spent itself; an empty
frame is a thread with no Python frame, e.g. the HTTP client's Rust threads).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

GROUPS = {
    "broker-call path (sending.py + brokers/ + pyreqwest)": (
        "services/app/sending.py",
        "brokers/",
        "pyreqwest/",
        "httpx/",
        "httpcore/",
    ),
    "recording (recording.py + repositories)": ("services/app/recording.py", "repositories/"),
    "settling": ("services/app/settling.py",),
    "planning (replication/)": ("replication/",),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--self", action="store_true", help="innermost frames only")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for path in args.files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            for frame in {frames[-1]} if args.self else set(frames):
                inclusive[frame] += n
            for name, markers in GROUPS.items():
                if any(m in frame for frame in frames for m in markers):
                    groups[name] += n
    print(f"{total} samples")
    for name, n in groups.most_common():
        print(f"{n / total * 100:5.1f}%  {name}")
    print()
    for frame, n in inclusive.most_common(args.top):
        print(f"{n / total * 100:5.1f}%  {frame[:140]}")


if __name__ == "__main__":
    main()
