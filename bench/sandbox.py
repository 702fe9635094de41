"""Sandbox costs: image build, start time, memory per sandbox. Prints a table (run as root).

    .venv/bin/python -m bench.sandbox [--sandboxes 8] [--rounds 3] [--rebuild]

--rebuild builds the image again into a temporary cache to time it (about a minute).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.sandbox import image
from tests.sandbox.lab import Lab


def time_image_build() -> float:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as cache:
        image.CACHE = Path(cache)
        started = time.monotonic()
        image.ensure_image(log=lambda *_: None)
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandboxes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    cached = image.image_dir() / "ready"
    if cached.exists():
        rows.append(("image build (recorded when cached)", f"{float(cached.read_text()):.1f} s"))
    lab = Lab.create(owner_pid=os.getpid())
    try:
        one, many, idle, served, removed = [], [], [], [], []
        for _ in range(args.rounds):
            started = time.monotonic()
            (single,) = lab.start(1)
            one.append(time.monotonic() - started)
            lab.remove(single)
            started = time.monotonic()
            group = lab.start(args.sandboxes)
            many.append(time.monotonic() - started)
            time.sleep(2)  # let boot-time jobs finish before reading idle memory
            idle += [s.private_memory_kib() / 1024 for s in group]
            group[0].ssh(
                "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y -q nginx supervisor python3-venv"
            )
            served.append(group[0].private_memory_kib() / 1024)
            started = time.monotonic()
            for s in group:
                lab.remove(s)  # returns once every process of the sandbox is gone
            removed.append(time.monotonic() - started)
        rows += [
            ("start 1 sandbox, sshd answering (median)", f"{statistics.median(one):.2f} s"),
            (f"start {args.sandboxes} sandboxes (median)", f"{statistics.median(many):.2f} s"),
            ("private memory per idle sandbox (median)", f"{statistics.median(idle):.1f} MiB"),
            ("... with nginx + supervisor running (median)", f"{statistics.median(served):.1f} MiB"),
            (f"remove {args.sandboxes}, every process gone (median)", f"{statistics.median(removed):.2f} s"),
        ]
    finally:
        lab.destroy()
    if args.rebuild:
        rows.append(("image build, measured now (debootstrap + repo)", f"{time_image_build():.1f} s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value\n{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
