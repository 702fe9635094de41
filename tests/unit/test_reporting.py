"""Markers, recap lines, the apply script and the tar it receives."""

import io
import tarfile

from tasks import recap
from tasks.facts import parse_probe
from tasks.pipeline import apply_script, pack, report_outcome
from tasks.remote import Marker, Result, command_line, parse_markers
from tasks.steps import StepPlan


def test_markers_are_parsed_and_other_output_ignored():
    out = "noise\n::step provision changed\n  ::fail enable_site nginx -t rejected: unknown directive\n"
    assert parse_markers(out) == [
        Marker("step", "provision", "changed"),
        Marker("fail", "enable_site", "nginx -t rejected: unknown directive"),
    ]


def test_commands_run_through_sudo_unless_root():
    assert command_line("echo 'hi'", "root") == "bash -c 'echo '\"'\"'hi'\"'\"''"
    assert command_line("true", "deploy") == "sudo -n bash -c true"


def test_recap_line_shape():
    assert recap.recap_line("sandbox1", recap.Tally(7, 1, 0)) == "sandbox1  ok=7 changed=1 failed=0"
    assert recap.step_line("sandbox1", "enable_site", "changed") == "sandbox1  enable_site  changed"


def test_outcome_counts_steps_and_stops_at_the_first_failure(capsys):
    stdout = "::step push changed\n::fail enable_site nginx -t rejected the new site\n"
    ok = report_outcome("h-outcome", ["provision", "push", "enable_site", "reload_nginx"],
                        {"push", "enable_site", "reload_nginx"}, Result(1, stdout, ""))  # fmt: skip
    assert not ok
    assert recap._tallies["h-outcome"] == recap.Tally(ok=1, changed=1, failed=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "h-outcome  enable_site  failed: nginx -t rejected the new site"
    del recap._tallies["h-outcome"]


def test_apply_script_runs_only_acting_steps_and_reports_each():
    script = apply_script(
        "PRELUDE", [StepPlan("provision"), StepPlan("push", "CHANGED=1")], check_health=True
    )
    assert script.startswith("PRELUDE\n")
    assert "STEP=provision" not in script
    assert "STEP=push; CHANGED=0\nCHANGED=1\nstep_done" in script
    assert "STEP=health; CHANGED=0\ngate\nstep_done" in script
    assert script.rstrip().endswith('record ok "${live:+from $live}"')


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


def test_notes_are_printed_after_their_step(capsys):
    stdout = "::note push other dependencies: gunicorn restarted\n::step push changed\n"
    assert report_outcome("h-note", ["push"], {"push"}, Result(0, stdout, ""))
    assert capsys.readouterr().out.splitlines() == [
        "h-note  push  changed",
        "h-note  push: other dependencies: gunicorn restarted",
    ]
    del recap._tallies["h-note"]


def test_pack_makes_a_tar_owned_by_root(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    with tarfile.open(fileobj=io.BytesIO(pack({"files/a": b"A", "release/run.sh": script}))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("files/a").read() == b"A"
    assert members["release/run.sh"].mode == 0o755 and members["files/a"].mode == 0o644
    assert {m.uid for m in members.values()} == {0}


def test_probe_output_parsing():
    facts = parse_probe("python=3.11\nprogram=RUNNING 427\npath./x=L:/y\n")
    assert facts.python == "3.11" and facts.program_state == "RUNNING" and facts.program_pid == 427
    assert facts.link("/x") == "/y" and not facts.exists("/z")
    assert parse_probe("program=ABSENT").program_state is None
    assert parse_probe("program=DOWN").program_state is None
    assert parse_probe("program=STOPPED 0").program_pid is None
