"""nginx.sh's reload_nginx_config: back once nginx's old workers take no new connection. The test's own
shell plays nginx's master (its pidfile names it), its children the workers, titled as nginx titles them;
`systemctl reload` is a stand-in that, as nginx does, retires the old workers a moment after it returns."""

from __future__ import annotations

from pathlib import Path

from tests.unit.serverside import run_functions

WORKER = "nginx: worker process"


def reload(tmp_path: Path, worker_title: str, retire_after: float) -> list[str]:
    """reload_nginx_config's time, then the old workers as it left them (`running` or `gone` each)."""
    pidfile = tmp_path / "nginx.pid"
    lines = [
        f"echo $$ > {pidfile}",
        f"(exec -a '{worker_title}' sleep 30) & one=$!",
        f"(exec -a '{worker_title}' sleep 30) & two=$!",
        'quiet() { "$@"; }',
        f"systemctl() {{ (sleep {retire_after}; kill $one $two) >/dev/null 2>&1 & stand_in=$!; }}",
        "start=$EPOCHREALTIME",
        "reload_nginx_config",
        'echo "took $(seconds_since "$start")"',
        "for pid in $one $two; do if kill -0 $pid 2>/dev/null; then echo running; else echo gone; fi; done",
        "kill $one $two $stand_in 2>/dev/null; wait",
    ]
    done = run_functions({"NGINX_PID": str(pidfile), "NGINX_UNIT": "nginx.service"}, lines)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[:-1]


def test_it_returns_once_the_old_workers_are_gone_not_when_the_signal_is_sent(tmp_path):
    took, *workers = reload(tmp_path, WORKER, retire_after=0.5)
    assert workers == ["gone", "gone"]
    assert 0.5 <= float(took.split()[1]) < 3


def test_workers_that_began_their_graceful_exit_do_not_hold_it_up(tmp_path):
    took, *workers = reload(tmp_path, f"{WORKER} is shutting down", retire_after=20)
    assert workers == ["running", "running"]  # they finish their requests: nobody waits for that
    assert float(took.split()[1]) < 0.5
