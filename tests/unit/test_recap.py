"""What a run prints: step lines, notes, the recap line per host, and the exit code."""

from types import SimpleNamespace

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


def test_a_hosts_runs_add_up_to_its_time(capsys, monkeypatch):
    monkeypatch.setattr(recap, "_tallies", {"h-timed": recap.Tally(ok=1), "h-untimed": recap.Tally(ok=1)})
    monkeypatch.setattr(recap, "_seconds", {})
    recap.timed("h-timed", 1.25)
    recap.timed("h-timed", 2.5)
    recap._finish()
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "h-timed  ok=1 changed=0 failed=0  in 3.8 s",
        "h-untimed  ok=1 changed=0 failed=0",
    ]


def test_json_mode_keeps_stdout_for_the_document_and_a_lock_exits_75(capsys):
    recap.to_stderr()
    try:
        recap.locked("h-locked", "locked by alice@laptop (deploy) since 2026-11-26T10:00:00Z")
    finally:
        recap._stream = "stdout"
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err == "h-locked  lock  failed: locked by alice@laptop (deploy) since 2026-11-26T10:00:00Z\n"
    )
    assert recap._locked == {"h-locked"}
    del recap._tallies["h-locked"]
    recap._locked.clear()


def test_the_recap_keeps_the_order_given_with_the_failed_hosts_last_saying_why(capsys, monkeypatch):
    for name, empty in (
        ("_tallies", {}),
        ("_failures", {}),
        ("_seconds", {}),
        ("_order", []),
        ("_at_end", []),
    ):
        monkeypatch.setattr(recap, name, empty)
    monkeypatch.setattr(recap, "_not_started", {})
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
    try:
        recap.note("web1", "push: OperationalError: postgres://app:hunter22@db/app refused")
        recap.report("web1", "push", "failed", "a release named \x1b]0;pwned\x07 with\ta tab")
        document = recap.concealed('{"detail": "postgres://app:hunter22@db/app"}')
    finally:
        recap._hidden.clear()
        recap._tallies.clear()
        recap._failures.clear()
    assert capsys.readouterr().out == (
        "web1  push: OperationalError: **** refused\n"
        "web1  push  failed: a release named ?]0;pwned? with a tab\n"
    )
    assert document == '{"detail": "****"}'


def test_once_the_settings_are_loaded_no_line_shows_a_value_of_app_env(capsys):
    config = default_config()
    config["app"]["env"] = {"SECRET_KEY": "s3cr3t-of-the-app"}
    try:
        settings.load(SimpleNamespace(config=config, user="root"))
        recap.note("web1", "logs: ValueError: bad key s3cr3t-of-the-app")  # what a server sent back
    finally:
        recap._hidden.clear()
    assert capsys.readouterr().out == "web1  logs: ValueError: bad key ****\n"
