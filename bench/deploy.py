"""Deploy wall times on a sandbox server, at several SSH round-trip times. Prints a table (run as root).

    .venv/bin/python -m bench.deploy [--rounds 3] [--rtt 0 50] [--app DIR --module MODULE]

The app is the sample app (app/), or --app (e.g. tests/apps/flaskr --module 'flaskr:create_app()', an
installable project: each code change builds its wheel and a venv).

Per round and RTT: a cold deploy to a fresh server (reset), then no-op deploys (nothing changed) and
code-only deploys (one file of the app changed). Times are whole `fab` runs, as a user sees them,
including Python's start and Fabric's imports. Medians over the rounds. A second table: the CPU time the
server used for each deploy (its cgroup's, from the run's start until SETTLE seconds after its end:
gunicorn's old workers may still be exiting), what decides how many hosts share a machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from tests import fab
from tests.sandbox.lab import Lab, Sandbox

SETTLE = 0.5  # s after a run, for the server's CPU time


def fab_deploy(lab: Lab, sandbox: Sandbox, override: Path) -> tuple[float, float]:
    """The run's wall time, and the server's CPU time for it (seconds)."""
    cpu = sandbox.cpu_seconds()
    done = fab.run(lab.ssh_config, sandbox.name, "-f", str(override), "deploy")
    if done.code != 0:
        raise SystemExit(str(done))
    time.sleep(SETTLE)
    return done.seconds, sandbox.cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt", type=int, nargs="+", default=[0, 50], help="round-trip times in ms")
    parser.add_argument("--app", type=Path, default=fab.ROOT / "app", help="the app directory (app.src)")
    parser.add_argument("--module", default="app:app", help="its app.module")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    app = work / "app"
    shutil.copytree(args.app, app, ignore=shutil.ignore_patterns("__pycache__", "instance"))
    override = work / "override.yaml"
    override.write_text(yaml.safe_dump({"app": {"src": str(app), "module": args.module}}))
    times: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}

    def deploy(rtt: int, kind: str) -> None:
        seconds, used = fab_deploy(lab, sandbox, override)
        times.setdefault((rtt, kind), []).append(seconds)
        cpu.setdefault((rtt, kind), []).append(used)

    lab = Lab.create(owner_pid=os.getpid())
    try:
        (sandbox,) = lab.start(1)
        for _ in range(args.rounds):
            for rtt in args.rtt:
                sandbox.reset()
                sandbox.set_latency(rtt)
                deploy(rtt, "cold")
                for n in range(3):
                    deploy(rtt, "no-op")
                    (app / "bench_marker.py").write_text(f"VALUE = {time.time_ns()}_{n}\n")
                    deploy(rtt, "code change")
    finally:
        lab.destroy()
        shutil.rmtree(work)

    print(f"{'deploy':<12}" + "".join(f"  {f'RTT {rtt} ms':>12}" for rtt in args.rtt) + "  server CPU")
    print("-" * (24 + 14 * len(args.rtt)))
    for kind in ("cold", "no-op", "code change"):
        cells = "".join(f"  {statistics.median(times[(rtt, kind)]):>10.2f} s" for rtt in args.rtt)
        used = statistics.median(c for rtt in args.rtt for c in cpu[(rtt, kind)])
        print(f"{kind:<12}{cells}  {used * 1000:>7.0f} ms")
    print(f"(medians; {args.rounds} rounds; cold n={args.rounds}, others n={3 * args.rounds} per RTT;")
    print(f" server CPU: the sandbox's, from a run's start to {SETTLE} s after its end, over every RTT)")


if __name__ == "__main__":
    main()
