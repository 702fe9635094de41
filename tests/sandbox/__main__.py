"""Sandbox servers for people: `python -m tests.sandbox up|down|status|demo` (as root).

up [-n N] [--suite S]   start N sandboxes (default 1) of Debian S (bookworm: 12, the default; trixie: 13)
                        and print the SSH config to use with `fab -S`
down                    tear down every lab started by this command
status                  list labs and their sandboxes
demo [--suite S]        start a sandbox, deploy the sample app to it with `fab deploy`, print what nginx
                        serves
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import urllib.request

from tests import fab
from tests.sandbox.image import DEFAULT_SUITE, SUITES
from tests.sandbox.lab import Lab, SandboxError, existing_labs


def _manual_lab() -> Lab:
    """The lab this command manages (owner 0), created on first use."""
    for lab in existing_labs():
        if lab.owner_pid == 0 and (lab.dir / "lab.json").exists():
            return lab
    return Lab.create()


def up(count: int, suite: str = DEFAULT_SUITE) -> Lab:
    lab = _manual_lab()
    lab.start(count, suite)
    for s in lab.sandboxes.values():
        print(f"{s.name}  {s.address}  Debian {SUITES[s.suite].version} ({s.suite})")
    print(f"ssh config: {lab.ssh_config}\n  ssh -F {lab.ssh_config} sandbox1\n"
          f"  fab -S {lab.ssh_config} -H sandbox1 deploy")  # fmt: skip
    return lab


def down() -> None:
    for lab in existing_labs():
        if lab.owner_pid == 0:
            lab.destroy()
            print(f"lab {lab.number}: torn down")


def status() -> None:
    for lab in existing_labs():
        owner = f"test run pid {lab.owner_pid}" if lab.owner_pid else "manual"
        print(f"lab {lab.number} ({owner}): {lab.ssh_config}")
        for s in lab.sandboxes.values():
            print(f"  {s.name}  {s.address}  {s.suite}  ssh port {s.ssh_port}")


def demo(suite: str = DEFAULT_SUITE) -> int:
    lab = _manual_lab()
    sandbox = next((s for s in lab.sandboxes.values() if s.suite == suite), None) or lab.start(1, suite)[0]
    print(f"deploying the sample app to {sandbox.name} ({sandbox.address}) ...", flush=True)
    deploy = subprocess.run(fab.command(lab.ssh_config, sandbox.name, "deploy"), cwd=fab.ROOT)
    if deploy.returncode != 0:
        return deploy.returncode
    with urllib.request.urlopen(f"http://{sandbox.address}/", timeout=10) as response:
        print(f"\nhttp://{sandbox.address}/ (nginx, port 80) says: {response.read().decode().strip()}")
    print(f"\nlog in: ssh -F {lab.ssh_config} {sandbox.name}\ntear down: python -m tests.sandbox down")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=["up", "down", "status", "demo"])
    parser.add_argument("-n", type=int, default=1, help="how many sandboxes `up` starts (1-8)")
    parser.add_argument("--suite", choices=list(SUITES), default=DEFAULT_SUITE,
                        help="the Debian suite of the sandboxes `up` and `demo` start")  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("sandboxes need root (namespaces, mounts, cgroups): run this as root", file=sys.stderr)
        return 2
    if not 1 <= args.n <= 8:
        print("-n: give 1 to 8 sandboxes", file=sys.stderr)
        return 2
    try:
        if args.command == "up":
            up(args.n, args.suite)
        elif args.command == "down":
            down()
        elif args.command == "status":
            status()
        else:
            return demo(args.suite)
    except SandboxError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
