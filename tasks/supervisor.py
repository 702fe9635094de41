"""supervisor_update: the app's supervisor program and gunicorn config; restart only when they changed."""

from __future__ import annotations

import shlex

from tasks import configs, health
from tasks.release import current_release
from tasks.settings import Settings
from tasks.steps import Context, StepPlan, blocked

# supervisord may still be opening its socket right after a start: wait for it (at most 10 s).
_WAIT_FOR_SUPERVISORD = (
    "for _ in $(seq 100); do supervisorctl pid >/dev/null 2>&1 && break; sleep 0.1; done; "
    'supervisorctl pid >/dev/null 2>&1 || die "supervisord does not answer"'
)


def ensure_running(s: Settings) -> str:
    """Wait out STARTING, start the program unless it runs; fail with the app's last error lines."""
    name = shlex.quote(s.name)
    return f"""
program_state() {{ supervisorctl status {name} 2>/dev/null | awk '{{print $2}}'; }}
for _ in $(seq 150); do
  state=$(program_state); case "$state" in STARTING|BACKOFF) sleep 0.1 ;; *) break ;; esac
done
if [ "$state" != RUNNING ]; then
  supervisorctl start {name} >/dev/null 2>&1; CHANGED=1
  state=$(program_state)
  [ "$state" = RUNNING ] || die "{s.name} is ${{state:-unknown}} in supervisor;\\
 {health.app_errors(s)}"
fi""".strip()


def plan_supervisor_update(ctx: Context) -> StepPlan:
    s, facts, q = ctx.settings, ctx.facts, shlex.quote
    prerequisite = blocked(
        ctx,
        "supervisor_update",
        not facts.installed("supervisor"),
        "supervisor is not installed",
        "provision",
    ) or blocked(
        ctx, "supervisor_update", current_release(s, facts) is None, "no release on the server", "push"
    )
    if prerequisite:
        return prerequisite
    program = configs.supervisor_program(s)
    gunicorn = configs.gunicorn_conf(s, facts.cpu_count)
    if (
        facts.sha256(s.supervisor_conf) == configs.sha256(program)
        and facts.sha256(s.gunicorn_conf) == configs.sha256(gunicorn)
        and facts.supervisor_active
        and facts.program_state == "RUNNING"
    ):
        return StepPlan("supervisor_update")
    name = q(s.name)
    script = f"""
systemctl is-active -q supervisor || {{ quiet systemctl start supervisor; CHANGED=1; }}
{_WAIT_FOR_SUPERVISORD}
before=$CHANGED; CHANGED=0
install_file "$W/files/gunicorn.conf.py" {q(s.gunicorn_conf)} 644
gunicorn_changed=$CHANGED; CHANGED=$before
install_file "$W/files/supervisor.conf" {q(s.supervisor_conf)} 644
out=$(supervisorctl update {name} 2>&1) || die "supervisorctl update failed: $out"
case "$out" in
  *added*|*updated*) CHANGED=1 ;;  # supervisor (re)started the program with its new definition
  *) if [ $gunicorn_changed = 1 ]; then quiet supervisorctl restart {name}; CHANGED=1; fi ;;
esac
{ensure_running(s)}"""
    files = {"files/gunicorn.conf.py": gunicorn.encode(), "files/supervisor.conf": program.encode()}
    return StepPlan("supervisor_update", script.strip(), files)


def plan_restart(ctx: Context, hard: bool) -> StepPlan:
    """restart: HUP and wait for the new workers (no dropped request) or, hard, stop and start."""
    s, facts = ctx.settings, ctx.facts
    prerequisite = blocked(ctx, "restart", facts.program_state is None, f"{s.name} is not deployed", "deploy")
    if prerequisite:
        return prerequisite
    name = shlex.quote(s.name)
    if hard:
        script = f"""
state=$(supervisorctl status {name} 2>/dev/null | awk '{{print $2}}')
if [ "$state" = RUNNING ]; then quiet supervisorctl restart {name}; CHANGED=1; fi"""
    else:
        script = 'reload_app "$LIVE_DIR" "$LIVE_DIR"; CHANGED=1'
    return StepPlan("restart", f"{script.strip()}\n{ensure_running(s)}")
