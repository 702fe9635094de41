"""The step model: a step plans from a Situation (what is known) to a StepPlan (what to do).

A planner is a pure function. An empty plan means the facts prove the step is done (ok); otherwise its
commands run in the apply script, and report ok or changed themselves, because earlier steps of the
same run may already have changed what the probe saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.facts import Facts
from tasks.layout import Layout
from tasks.platform import Platform
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.shell import Value


@dataclass(frozen=True)
class StepPlan:
    """What a step does in this run; its planner leaves `name` out (Step.plan_for sets it)."""

    commands: tuple[str, ...] = ()  # lines built with tasks.shell.line: calls of runtime functions
    files: Mapping[str, bytes | Path] = field(default_factory=dict)  # path in $W -> content the step uses
    cleanup: tuple[str, ...] = ()  # lines run once the whole run succeeded (pruning)
    touches: frozenset[str] = frozenset()  # what it may change that later steps care about ("nginx")
    blocked: str = ""  # a missing prerequisite: one line naming the task to run first
    # What a check run (--check) shows of it: why it acts and what it would do, in lines for people, and
    # the config files it writes (server path -> the text they would hold), shown as diffs.
    why: tuple[str, ...] = ()
    writes: Mapping[str, str] = field(default_factory=dict)
    switches_to: str | None = None  # the release `current` points at once the run succeeded (push, rollback)
    # A package install it leaves running in the background (provision), and whether this step runs
    # beside one: it needs none of the packages, or awaits them itself (runtime `await_packages`) where
    # it does. Other steps, the health gate and the end of the run wait for the install to end.
    installs_beside: bool = False
    beside_packages: bool = False
    name: str = ""  # the step's
    after_gate: bool = False  # the step's (Step.after_gate)

    @property
    def acts(self) -> bool:
        return bool(self.commands)


@dataclass(frozen=True)
class Situation:
    """What a step plans from: the settings, the server as probed, and this run."""

    settings: Settings
    facts: Facts
    platform: Platform
    layout: Layout
    steps: tuple[str, ...]  # the steps of this run, in order
    now: datetime  # UTC; names a new release
    user: str = ""  # who runs the deploy (local user name), recorded with a release
    control_host: str = ""  # the machine it runs from
    prepared: Mapping[str, Any] = field(default_factory=dict)  # step -> what its `prepare` made
    earlier: tuple[StepPlan, ...] = ()  # the plans of the steps before this one in the run

    def runs(self, step: str) -> bool:
        """Whether `step` is part of this run (and so, by pipeline order, runs before later steps)."""
        return step in self.steps

    def installing(self) -> bool:
        """Whether an earlier step of this run leaves a package install running in the background."""
        return any(plan.installs_beside for plan in self.earlier if plan.acts)

    def earlier_touches(self, what: str) -> bool:
        """Whether an earlier step of this run may change `what`."""
        return any(what in plan.touches for plan in self.earlier if plan.acts)


class Refused(Exception):
    """Why a step cannot go to this server (or leave this machine): one line, said before anything on the
    server changes."""


@dataclass(frozen=True)
class Requirement:
    """Something a step needs on the server, and the step that provides it."""

    missing: Callable[[Situation], bool]
    what: str  # said when it is missing: "nginx is not installed" ({app} is the app's name)
    provided_by: str  # the step (and task) that provides it: "provision"


def _none(*_: object) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Probe:
    """What a step asks the probe besides the facts every run shares (the platform, the app's user, the
    lock, the live release): the paths whose state it compares, of those the kit's own files whose
    content it compares (`hashed`: where only root writes), and its own part of the probe program with
    the questions it is asked on each platform and the typed form of its answer."""

    paths: Callable[[Settings, Layout], Iterable[str]] = _none
    hashed: Callable[[Settings, Layout], Iterable[str]] = _none
    # Of those, the configs whose text a check run diffs (never a secret's file): besides the site's and
    # the program's, which every check run reads.
    shown: Callable[[Settings, Layout], Iterable[str]] = _none
    part: str = ""  # runtime/NAME.py: its `gather(asked)` returns facts, merged into the probe's answer
    asks: Callable[[Settings, Layout, Platform], Mapping[str, Any]] | None = None
    facts: type | None = None  # its facts' typed form: `facts.from_json(answer)`; Facts.of(that type)


@dataclass(frozen=True)
class Step:
    """A step of the pipeline (or an action such as rollback): its task's name and help, its planner."""

    name: str
    doc: str  # the task's help line in `fab --list`
    plan: Callable[[Situation], StepPlan]
    requires: tuple[Requirement, ...] = ()
    # Work on the control machine, for a step that needs it (push: the app and its wheels): `read` runs
    # before anything connects (what it refuses reaches no server) and returns what it found with the
    # notes to say of it; `prepare`, from that, once the server is probed (a check run: True). Both
    # raise Refused; what `prepare` returns is the situation's `prepared[name]` for the planner.
    read: Callable[[Settings], tuple[Any, tuple[str, ...]]] | None = None
    prepare: Callable[[Situation, Any, bool], Any] | None = None
    # Its runtime files (tasks/runtime/), included in every apply script, and the values they read
    # besides the ones every apply script gets (runtime.globals_for).
    runtime: tuple[str, ...] = ()
    values: Callable[[Settings, Layout, Platform], Mapping[str, Value]] | None = None
    probe: Probe = Probe()  # what it needs to know of the server, besides the shared facts
    # Its commands run after the health gate of a run that has one (the app's processes follow the web
    # once it serves the new release); it is reported after the gate, too.
    after_gate: bool = False

    def plan_for(self, situation: Situation) -> StepPlan:
        """The step's plan, or a blocked one when a requirement is missing and no earlier step of the run
        provides it."""
        for requirement in self.requires:
            if requirement.missing(situation) and not situation.runs(requirement.provided_by):
                what = requirement.what.format(app=situation.layout.app)
                return StepPlan(
                    blocked=f"{what}: run `fab {requirement.provided_by}` first",
                    name=self.name,
                    after_gate=self.after_gate,
                )
        return replace(self.plan(situation), name=self.name, after_gate=self.after_gate)
