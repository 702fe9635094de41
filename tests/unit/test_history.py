"""The deploy history: lines appended by a shell function, parsed and shown back."""

import json
import shlex
import subprocess

from tasks import history


def append(tmp_path, *fields: str) -> None:
    script = history.append_function(str(tmp_path)) + "\nhistory_append " + " ".join(map(shlex.quote, fields))
    subprocess.run(["bash", "-c", script], check=True, cwd=tmp_path)


def test_appended_lines_parse_back_in_order(tmp_path):
    append(tmp_path, "alice", "20261126T010000Z-abc", "deploy", "ok", "")
    append(tmp_path, "bob", "20261126T020000Z-def", "rollback", "failed", "health: HTTP 500\nsecond line")
    entries = history.parse((tmp_path / history.FILE).read_text())
    assert [(e.user, e.action, e.result) for e in entries] == [
        ("alice", "deploy", "ok"),
        ("bob", "rollback", "failed"),
    ]
    assert entries[0].detail == "-"
    assert entries[1].detail == "health: HTTP 500 second line"
    assert entries[0].time.endswith("Z") and entries[0].time <= entries[1].time


def test_fields_with_quotes_and_tabs_stay_one_field_each(tmp_path):
    append(tmp_path, "o'brien", "r1", "deploy", "ok", "tab\there $(touch pwned)")
    (entry,) = history.parse((tmp_path / history.FILE).read_text())
    assert entry.user == "o'brien"
    assert entry.detail == "tab here $(touch pwned)"
    assert not (tmp_path / "pwned").exists()


def test_render_as_table_and_json():
    entries = [history.Entry("2026-11-26T01:00:00Z", "alice", "r1", "deploy", "ok", "-")]
    table = history.render(entries).splitlines()
    assert table[0].split() == list(history.FIELDS)
    assert table[1].split() == ["2026-11-26T01:00:00Z", "alice", "r1", "deploy", "ok", "-"]
    document = history.render(entries, as_json=True)
    assert "\n" not in document  # one line per host
    assert json.loads(document) == [
        {"time": "2026-11-26T01:00:00Z", "user": "alice", "release": "r1", "action": "deploy",
         "result": "ok", "detail": "-"}
    ]  # fmt: skip
    assert history.render([]) == "no deploys recorded yet"
