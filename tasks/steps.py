"""The step model: what a step plans to do on a server, and what it plans it from.

A planner is a pure function Context -> StepPlan. An empty script means the facts prove the step is
already done (ok); otherwise the script runs inside the apply script and reports ok or changed itself,
because earlier steps of the same run may already have changed what the probe saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.facts import Facts
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.release import AppSource

# The pipeline's fixed order; deploy runs all of them.
PIPELINE = (
    "provision", "push", "backup_default", "enable_site", "reload_nginx", "supervisor_update", "enable_boot",
)  # fmt: skip


@dataclass(frozen=True)
class StepPlan:
    name: str
    script: str = ""  # bash run by the apply script; it may call `die MESSAGE` and set CHANGED=1
    files: dict[str, bytes | Path] = field(default_factory=dict)  # tar path -> content the script uses
    blocked: str = ""  # a missing prerequisite: one line naming the task to run first

    @property
    def acts(self) -> bool:
        return bool(self.script)


@dataclass(frozen=True)
class Context:
    settings: Settings
    facts: Facts
    steps: tuple[str, ...]  # the steps of this run, in pipeline order
    now: datetime  # UTC; names a new release
    venv_id: str = ""  # the venv the app's requirements need on this server ("" outside push)
    wheels: tuple[Path, ...] = ()  # shipped when the server lacks that venv
    app: AppSource | None = None  # the local app when push runs
    user: str = ""  # who runs the deploy (local user name), recorded with a release
    control_host: str = ""  # the machine it runs from

    def runs(self, step: str) -> bool:
        """Whether `step` is part of this run (and so, by pipeline order, runs before later steps)."""
        return step in self.steps


def blocked(ctx: Context, step: str, missing: bool, what: str, prerequisite: str) -> StepPlan | None:
    """A blocked plan when `what` is missing and the step that provides it is not part of this run."""
    if missing and not ctx.runs(prerequisite):
        return StepPlan(step, blocked=f"{what}: run `fab {prerequisite}` first")
    return None
