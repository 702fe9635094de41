"""What a server must not hold before the kit changes anything on it, and what the settings ask of the
local app that it cannot give. Each problem found is a one-line refusal, and the run stops after its
probe, with nothing changed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks import static
from tasks.steps.model import Probe, Situation


@dataclass(frozen=True)
class Listener:
    """A process of another user than the app's listening on the app's port."""

    pid: int
    user: str
    command: str


@dataclass(frozen=True)
class Listeners:
    """The guards' facts (runtime/probe_listeners.py): who else listens on the app's port."""

    found: tuple[Listener, ...] = ()  # processes of other users than the app's

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Listeners:
        return cls(tuple(Listener(**listener) for listener in doc.get("listeners", ())))


# What the guards ask of the probe: the app's port, and the paths of the app that its user must own.
PROBE = Probe(
    paths=lambda s, paths: (paths.base_dir, paths.run_dir, paths.log_dir, paths.tmpfiles_conf),
    part="probe_listeners.py",
    asks=lambda s, paths, platform: {"port": s.app.port, "app": paths.app},
    facts=Listeners,
)

# The step name a refusal is reported under: `web1  guard  failed: app.port: 8080 is taken by ...`.
NAME = "guard"


def refusals(sit: Situation) -> list[str]:
    """Why the kit must not act on this server for this app, if it must not."""
    s, facts, paths = sit.settings, sit.facts, sit.layout
    found = []
    user = facts.app_user
    if user is not None and user.home != paths.base_dir:
        # The kit's users have the app's directory as their home: any other is an account of the system's.
        found.append(
            f"app.name: the server has a user {paths.app} that flaskdeploy did not make (its home is"
            f" {user.home}): choose another app.name"
        )
    if user is None:
        taken = [
            p for p in (paths.base_dir, paths.run_dir, paths.log_dir, paths.tmpfiles_conf) if facts.exists(p)
        ]
        if taken:
            found.append(
                f"app.name: {taken[0]} exists but the server has no user {paths.app}: it belongs to something"
                " else; choose another app.name"
            )
    listeners = facts.of(Listeners).found  # processes of other users than the app's
    if listeners:
        listener = listeners[0]
        who = f"{listener.command} (pid {listener.pid}, user {listener.user})"
        found.append(f"app.port: {s.app.port} is taken by {who}: choose another app.port")
    if not sit.runs("provision"):
        # As earlier versions left them, the app's user could plant links there for root: provision
        # takes them back first.
        for path in (paths.shared_dir, paths.log_dir):
            state = facts.path(path)
            if state.kind == "dir" and state.owner != "root":
                why = f"{path} is writable by {state.owner} (as earlier versions left it)"
                found.append(f"{why}: run `fab provision` first")
    links = [
        p for p, state in facts.paths.items() if p.startswith(f"{paths.shared_dir}/") and state.kind == "link"
    ]
    if links:
        found.append(f"{links[0]} is a symbolic link, which root will not follow: remove it (the app may)")
    if sit.runs("push") or sit.runs("enable_site"):
        # Both serve the static directories (a release opens them, the nginx site points at them): a
        # missing one is refused before any planner renders a site that points at nothing. It is read
        # from app.src, which even a run that does not read the app (enable_site alone) has.
        problem = static.refusal(s, s.app.src)
        if problem:
            found.append(problem)
    return found
