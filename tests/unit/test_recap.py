"""What a run prints: step lines, notes, the recap line per host, and the exit code."""

from types import SimpleNamespace

import pytest

from tasks import recap, settings
from tests.unit.conftest import default_config


def test_recap_line_shape():
    assert recap.recap_line("sandbox1", recap.Tally(7, 1, 0)) == "sandbox1  ok=7 changed=1 failed=0"
    assert recap.step_line("sandbox1", "enable_site", "changed") == "sandbox1  enable_site  changed"


def test_times_are_tenths_of_seconds_then_minutes():
    said = [recap.duration(s) for s in (0, 0.04, 3.14159, 12.96, 59.94, 59.96, 125.3, 3600)]
    assert said == [
        "0.0 s",
        "0.0 s",
        "3.1 s",
        "13.0 s",
        "59.9 s",
        "1 min 0.0 s",
        "2 min 5.3 s",
        "60 min 0.0 s",
    ]


def test_step_lines_line_up_their_times_and_the_recap_line_ends_with_the_hosts_time():
    width = len("supervisor_update  changed")
    lines = [
        recap.step_line("sandbox1", "provision", "changed", seconds=3.14, width=width),
        recap.step_line("sandbox1", "supervisor_update", "changed", seconds=12.0, width=width),
        recap.step_line("sandbox1", "health", "ok", seconds=0.31, width=width),
    ]
    assert lines == [  # `STEP  STATUS` as without a time: what scripts grep for
        "sandbox1  provision  changed            3.1 s",
        "sandbox1  supervisor_update  changed   12.0 s",
        "sandbox1  health  ok                    0.3 s",
    ]
    # A failure says why, not how long; a step the plan left alone has no time.
    failed = recap.step_line("sandbox1", "push", "failed", "boom", seconds=1.0, width=width)
    assert failed == "sandbox1  push  failed: boom"
    assert recap.step_line("sandbox1", "push", "ok", width=width) == "sandbox1  push  ok"
    line = recap.recap_line("sandbox1", recap.Tally(2, 6, 0), 6.84)
    assert line == "sandbox1  ok=2 changed=6 failed=0  in 6.8 s"


def test_a_hosts_runs_add_up_to_its_time(capsys):
    recap.report("h-timed", "deploy", "ok")
    recap.report("h-untimed", "deploy", "ok")
    recap.timed("h-timed", 1.25)
    recap.timed("h-timed", 2.5)
    recap._finish()
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "h-timed  ok=1 changed=0 failed=0  in 3.8 s",
        "h-untimed  ok=1 changed=0 failed=0",
    ]


def test_json_mode_keeps_stdout_for_the_document_and_a_lock_exits_75(capsys, fresh_run):
    recap.to_stderr()
    recap.locked("h-locked", "locked by alice@laptop (deploy) since 2026-11-26T10:00:00Z")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err == "h-locked  lock  failed: locked by alice@laptop (deploy) since 2026-11-26T10:00:00Z\n"
    )
    assert fresh_run.hosts["h-locked"].locked
    assert recap.exit_code() == recap.LOCKED_EXIT


def test_the_recap_keeps_the_order_given_with_the_failed_hosts_last_saying_why(capsys):
    recap.order(["h1", "h2", "h3", "h4"])
    recap.report("h4", "deploy", "changed")
    recap.report("h2", "connect", "failed", "cannot connect to h2 port 1")
    recap.report("h3", "deploy", "ok")
    recap.report("h1", "health", "failed", "502")
    assert recap.print_recap()
    assert capsys.readouterr().out.splitlines()[-4:] == [
        "h3  ok=1 changed=0 failed=0",
        "h4  ok=0 changed=1 failed=0",
        "h1  ok=0 changed=0 failed=1  (health: 502)",
        "h2  ok=0 changed=0 failed=1  (connect: cannot connect to h2 port 1)",
    ]


def test_values_long_enough_to_mean_something_are_masked_the_longest_first():
    secret = "s3cr3t-value"
    assert recap.masked(f"KEY={secret} and {secret}x", [secret, "s3cr3t"]) == "KEY=**** and ****x"
    assert recap.masked("workers = 1", ["1"]) == "workers = 1"  # too short to mask


def test_every_line_masks_app_envs_values_and_shows_no_control_character(capsys):
    # What a server sends back lands in lines: an app's error line quoting its settings, a release's
    # failure, a process's name with a terminal's escapes in it.
    recap.hide(["postgres://app:hunter22@db/app", "on"])
    recap.note("web1", "push: OperationalError: postgres://app:hunter22@db/app refused")
    recap.report("web1", "push", "failed", "a release named \x1b]0;pwned\x07 with\ta tab")
    document = recap.concealed('{"detail": "postgres://app:hunter22@db/app"}')
    assert capsys.readouterr().out == (
        "web1  push: OperationalError: **** refused\n"
        "web1  push  failed: a release named ?]0;pwned? with a tab\n"
    )
    assert document == '{"detail": "****"}'


def test_once_the_settings_are_loaded_no_line_shows_a_value_of_app_env(capsys):
    config = default_config()
    config["app"]["env"] = {"SECRET_KEY": "s3cr3t-of-the-app"}
    settings.load(SimpleNamespace(config=config, user="root"))
    recap.note("web1", "logs: ValueError: bad key s3cr3t-of-the-app")  # what a server sent back
    assert capsys.readouterr().out == "web1  logs: ValueError: bad key ****\n"


def test_the_exit_code_is_derived_from_the_steps_results_of_all_the_hosts():
    def exit_code(*steps: tuple[str, str, str]) -> int:
        """A run's exit code, its hosts having reported these steps: (host, step, status); a host whose
        name starts with `check` is a check run's."""
        run = recap.Run()
        for host, step, status in steps:
            if host.startswith("check"):
                run.checking(host)
            if step == "lock":
                run.locked(host, "locked by alice@laptop (deploy)")
            elif step == "exec":
                run.exited(host, step, int(status))
            else:
                run.report(host, step, status)
        return run.exit_code()

    assert exit_code(("a", "push", "changed"), ("b", "push", "ok")) == 0
    assert exit_code(("check-a", "push", recap.WOULD_CHANGE), ("check-b", "push", "ok")) == 3
    assert exit_code(("check-a", "push", "ok"), ("b", "push", "changed")) == 0, "b is no check run"
    assert exit_code(("a", "push", "ok"), ("a", "health", "failed")) == 1, "a failure after ok steps"
    # A failure anywhere wins over what a check run would change; a lock's or a command's only if alone.
    assert exit_code(("check-a", "push", recap.WOULD_CHANGE), ("check-b", "push", "failed")) == 1
    assert exit_code(("check-a", "push", recap.WOULD_CHANGE), ("check-b", "lock", "failed")) == 75
    assert exit_code(("a", "lock", "failed"), ("b", "lock", "failed")) == 75
    assert exit_code(("a", "lock", "failed"), ("b", "exec", "4")) == 1
    assert exit_code(("a", "exec", "4"), ("b", "exec", "0"), ("b", "push", "failed")) == 1
    assert exit_code(("a", "exec", "0"), ("b", "exec", "4"), ("c", "exec", "5")) == 4


def test_an_unknown_status_is_refused_before_it_is_counted_or_printed(capsys, fresh_run):
    with pytest.raises(ValueError, match="'skipped' is no step outcome"):
        recap.report("h", "push", "skipped")
    assert fresh_run.hosts == {} and capsys.readouterr().out == ""
