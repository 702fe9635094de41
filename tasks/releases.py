"""The releases on a server: list them, roll back to one, show the deploy history."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from json import dumps, loads

from fabric import Connection, task

from tasks import history as deploy_history
from tasks import recap, settings
from tasks.facts import target_name
from tasks.pipeline import converge, host_name, inspect
from tasks.release import current_release, previous_release
from tasks.settings import META, Settings
from tasks.steps import Context, StepPlan, blocked


@dataclass(frozen=True)
class Release:
    id: str
    time: str  # UTC, ISO 8601
    user: str  # who deployed it (local user name on the control machine)
    host: str  # the control machine
    venv: str
    current: bool
    previous: bool  # live before the last switch: where `rollback` goes
    failed: str  # why it failed its deploy ("" if it did not)


def listing_script(s: Settings) -> str:
    """Shell printing the links and one tab-separated line per release: id, release.json, failure."""
    q = shlex.quote
    return f"""
echo "current=$(readlink {q(s.current)})"
echo "previous=$(readlink {q(s.previous)})"
cd {q(s.releases_dir)} 2>/dev/null || exit 0
for d in */; do
  [ -d "$d" ] || continue; r=${{d%/}}
  printf 'release=%s\\t%s\\t%s\\n' "$r" "$(tr -d '\\n' < "$r/{META}/release.json" 2>/dev/null)" \\
    "$(head -n 1 "$r/{META}/failed" 2>/dev/null)"
done
"""


def parse_listing(stdout: str) -> list[Release]:
    """The releases the listing script printed, oldest first."""
    links: dict[str, str] = {}
    rows = []
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "release":
            rows.append((value.split("\t") + ["", ""])[:3])
        elif key in ("current", "previous"):
            links[key] = target_name(value) or ""
    releases = []
    for release_id, meta_text, failed in sorted(rows):
        try:
            meta = loads(meta_text) if meta_text else {}
        except ValueError:
            meta = {}
        stamp = release_id[:16]  # a release made before release.json existed: its id holds the time
        time = (
            meta.get("time")
            or f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
        )
        releases.append(
            Release(
                release_id, time, meta.get("user", ""), meta.get("host", ""), meta.get("venv", ""),
                links.get("current") == release_id, links.get("previous") == release_id, failed,
            )
        )  # fmt: skip
    return releases


def render(releases: list[Release], as_json: bool = False) -> str:
    """A table for people, or one line of JSON (a list, oldest first) for scripts."""
    if as_json:
        return dumps([asdict(r) for r in releases])
    if not releases:
        return "no releases yet"
    rows = [("", "id", "time", "user", "")]
    for r in releases:
        mark = "*" if r.current else ("<" if r.previous else "")
        note = "current" if r.current else ("previous: rollback target" if r.previous else "")
        note = f"failed: {r.failed}" if r.failed and not r.current else note
        rows.append((mark, r.id, r.time, f"{r.user}@{r.host}" if r.host else r.user or "?", note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]).rstrip()
        for row in rows
    )


def plan_rollback(ctx: Context, to: str) -> StepPlan:
    """rollback: `current` back to the previous release (or `to`), with its configs; SSH is all it needs."""
    s, facts, q = ctx.settings, ctx.facts, shlex.quote
    live = current_release(s, facts)
    prerequisite = blocked(ctx, "rollback", live is None, "no release on the server", "deploy")
    if prerequisite:
        return prerequisite
    target = to or previous_release(s, facts)
    if not target:
        return StepPlan(
            "rollback", blocked="no previous release to roll back to (see `fab releases`, --to=ID)"
        )
    if target not in facts.releases:
        return StepPlan("rollback", blocked=f"no release {target} on the server (see `fab releases`)")
    if target == live:
        return StepPlan("rollback")
    venv = facts.release_venv(target)
    if venv not in facts.venvs:
        return StepPlan(
            "rollback", blocked=f"release {target} cannot run: its venv {venv} is gone; deploy instead"
        )
    release = q(f"{s.releases_dir}/{target}")
    return StepPlan(
        "rollback",
        f"[ -f {release}/{META}/release.json ] || die"
        f" {q(f'release {target} keeps no record of its configs (it predates them); deploy it instead')}\n"
        f"RELEASE={q(target)}\ngo_live {release}\nCHANGED=1",
    )


@task(help={"to": "the id of the release to go back to (see `fab releases`); default: the previous one"})
def rollback(c: Connection, to: str = "") -> None:
    """Back to the previous release (or --to=ID): a symlink switch and a graceful reload, health-gated."""
    converge(
        c, ("rollback",), action="rollback", planners={"rollback": lambda ctx: plan_rollback(ctx, to)},
        check_health=True,
    )  # fmt: skip


@task(help={"json": "print the list as JSON (id, time, user, host, venv, current, previous, failed)"})
def releases(c: Connection, json: bool = False) -> None:
    """List the releases on the server: id, when, who deployed it, which is current and previous."""
    if json:
        recap.to_stderr()
    stdout = inspect(c, "releases", listing_script(settings.load(c)))
    if stdout is not None:
        _print(host_name(c), render(parse_listing(stdout), as_json=json), json)


@task(help={"json": "print the entries as JSON (time, user, release, action, result, detail)"})
def history(c: Connection, json: bool = False) -> None:
    """Show the deploy history: every deploy, rollback and restart, with who, when and the result."""
    if json:
        recap.to_stderr()
    s = settings.load(c)
    stdout = inspect(
        c, "history", f"cat {shlex.quote(f'{s.base_dir}/{deploy_history.FILE}')} 2>/dev/null || true"
    )
    if stdout is not None:
        _print(host_name(c), deploy_history.render(deploy_history.parse(stdout), as_json=json), json)


def _print(host: str, text: str, as_json: bool) -> None:
    """A JSON document alone on its line (one per host) on stdout; a table with each line led by the host."""
    if as_json:
        print(text, flush=True)
    else:
        for line in text.splitlines():
            recap.note(host, line)
