"""Fleets: which hosts a run acts on (-H, else deploy.group's hosts, else deploy.hosts), how many at once
(deploy.parallel, --parallel N) and, for a rolling run (--batch N or N%), in which batches; after each
batch, whether the rollout goes on (--max-failures N). The executor (tasks/cli.py) runs the calls."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from invoke.exceptions import Exit

from tasks.settings import Settings

T = TypeVar("T")

PARALLEL, BATCH, MAX_FAILURES = "parallel", "batch", "max_failures"
FLEET_HELP = {
    PARALLEL: "how many hosts to act on at once (default: deploy.parallel, 10; 1: one after the other)",
}
ROLLING_HELP = {
    BATCH: "roll out in batches of N hosts (or N% of them), each health-gated: a failed host stops the"
    " rollout before the next batch",
    MAX_FAILURES: "let a rolling run go on past this many failed hosts (default 0)",
}


def hosts_of(s: Settings) -> tuple[str, ...]:
    """The hosts a run acts on when no -H is given: deploy.group's, else deploy.hosts."""
    return s.deploy.groups[s.deploy.group] if s.deploy.group is not None else s.deploy.hosts


def parallel(given: Any, s: Settings, serial: bool = False) -> int:
    """How many hosts at once: --parallel N, else 1 for a task whose output is no lines (serial), else
    deploy.parallel. Exit 2 for a --parallel that is no count."""
    if given in (None, "", 0, "0"):
        return 1 if serial else s.deploy.parallel
    try:
        count = int(given)
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= 1000:
        raise Exit(f"--parallel: must be an integer 1-1000, got {given!r}", code=2)
    return count


def batch_size(given: Any, hosts: int) -> int:
    """Hosts a batch: --batch N or N% (of the hosts, rounded up, at least 1); no --batch: all of them."""
    text = str(given or "").strip()
    if not text:
        return max(hosts, 1)
    match = re.fullmatch(r"(\d{1,6})(%?)", text)
    if not match or int(match[1]) == 0 or (match[2] and int(match[1]) > 100):
        raise Exit(f"--batch: must be a number of hosts (like 2) or a percentage (like 25%), got {text!r}", 2)
    if match[2]:
        return max(1, math.ceil(hosts * int(match[1]) / 100))
    return int(match[1])


def max_failures(given: Any) -> int:
    try:
        count = int(given or 0)
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise Exit(f"--max-failures: must be a number of hosts (0 or more), got {given!r}", code=2)
    return count


def batches(items: Sequence[T], size: int) -> list[list[T]]:
    """items in consecutive batches of `size` (the last one may be smaller)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def stopped_message(
    done: Sequence[str], failed: Sequence[str], left: Sequence[str], releases: dict[str, str | None]
) -> str:
    """Why a rollout stopped, and which hosts have which release now: the hosts done keep the new one,
    those that failed their own (their run switched back, or never switched), those not started theirs."""

    def named(hosts: Sequence[str]) -> str:
        return ", ".join(f"{host} ({releases.get(host) or 'no release'})" for host in hosts)

    parts = [f"rollout stopped: {len(failed)} host(s) failed ({', '.join(failed)})"]
    parts.append(f"done, on the new release: {named(done) or 'none'}")
    parts.append(f"failed, live release: {named(failed)}")
    parts.append(f"not started, unchanged: {', '.join(left) or 'none'}")
    return "; ".join(parts)
