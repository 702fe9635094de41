"""What a run prints: step lines, notes, the recap line per host, and the exit code."""

from tasks import recap


def test_recap_line_shape():
    assert recap.recap_line("sandbox1", recap.Tally(7, 1, 0)) == "sandbox1  ok=7 changed=1 failed=0"
    assert recap.step_line("sandbox1", "enable_site", "changed") == "sandbox1  enable_site  changed"


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
