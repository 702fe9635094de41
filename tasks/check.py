"""Check mode (`--check` on deploy, each step, rollback and restart): what a run would change, and why.

A check run probes without the lock and asks the probe for what a check shows (the config files' text,
the live release's list of files, app.env as salted digests): a read-only command that writes nothing on
the server. The planners plan as for a real run; nothing is applied. Each step that would act says
`would change`, with its reasons and a unified diff of every config file it would write. Values of
app.env never show: the env is compared through digests, and any value that shows up in a line is
masked (tasks/recap.py, for every line of a run). The run exits EXIT_WOULD_CHANGE when some step would
change something, 0 when none would.
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Mapping, Sequence

from tasks import recap
from tasks.steps.model import StepPlan


def salt() -> str:
    """A new salt for the probe's digests of app.env: the digests of one run match no other's."""
    return secrets.token_hex(16)


def diff(path: str, before: str | None, after: str) -> list[str]:
    """A unified diff (one line of context) of a config file as the server has it and as it would be."""
    return list(
        difflib.unified_diff(
            (before or "").splitlines(), after.splitlines(), lineterm="", n=1,
            fromfile=path if before is not None else "/dev/null", tofile=f"{path} (would be)",
        )
    )  # fmt: skip


def details(plan: StepPlan, configs: Mapping[str, str | None]) -> list[str]:
    """What a check run shows under a step that would act: its reasons, then its configs' diffs."""
    lines = list(plan.why)
    for path, text in plan.writes.items():
        lines += diff(path, configs.get(path), text)
    return lines


def report(host: str, plans: Sequence[StepPlan], configs: Mapping[str, str | None]) -> None:
    """Print each step as a check run sees it, counted for the recap (`would change` for `changed`); a
    value of app.env that shows up in a line (a diff of a config) is masked there, as in every line."""
    for plan in plans:
        if not plan.acts:
            recap.report(host, plan.name, "ok")
            continue
        recap.report(host, plan.name, recap.WOULD_CHANGE)
        for text in details(plan, configs):
            recap.note(host, f"  {text}")
    if not any(plan.acts for plan in plans):
        recap.note(host, "nothing would change")
