"""Converging a host without SSH: the apply script a plan makes, the tar it gets, the outcome it reports."""

import io
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tasks import recap, wheels
from tasks.converge import Progress, apply_script, pack
from tasks.dependencies import declared as declared_in
from tasks.remote import Result
from tasks.shell import VALUES_END
from tasks.source import read_source
from tasks.steps import NAMES, push
from tasks.steps.model import Refused, StepPlan
from tasks.steps.push import Releases
from tests.unit.conftest import (
    acting,
    amended,
    converged_facts,
    fresh_facts,
    plans,
    situation,
    with_processes,
)


def report_outcome(host: str, names: list[str], acting: set[str], result) -> bool:
    """The steps' lines from an apply script's whole output, as Progress reports them while it comes."""
    progress = Progress(host, names, acting)
    progress(result.stdout.encode())
    return progress.finish(result)


def body(script) -> list[str]:
    """The script's own lines (after the values and the runtime files)."""
    return list(script.lines)


def test_the_apply_script_runs_only_acting_steps_each_reported_then_the_gate_then_cleanup(settings):
    s = replace(settings, deploy=replace(settings.deploy, keep_releases=2))
    sit = situation(s, fresh_facts())
    found = [
        StepPlan(name="provision"),
        StepPlan(("switch_to_built",), cleanup=('prune "$RELEASES_DIR" old',), name="push"),
    ]
    script = apply_script(sit, found, "deploy", health_gate=True)
    assert body(script) == [
        "begin_apply",
        "begin_step push", "switch_to_built", "end_step",
        "begin_step health", "gate", "end_step",
        'prune "$RELEASES_DIR" old',  # only after the health gate passed
        "finish_run",
    ]  # fmt: skip
    assert script.values["ACTION"] == "deploy" and script.values["WHO"] == "alice"
    assert script.values["LOCK_HOLDER"] == "alice@laptop (deploy)"
    assert apply_script(sit, found, "enable_site", health_gate=False).values["ACTION"] == ""  # not recorded
    rendered = script.render()
    assert rendered.index(VALUES_END) < rendered.index("begin_apply() {") < rendered.rindex("begin_apply")


def test_a_deploy_of_a_fresh_server_is_one_script_with_every_step(settings):
    settings = with_processes(settings, worker="python worker.py")
    sit = situation(settings, fresh_facts())
    lines = body(apply_script(sit, plans(settings, fresh_facts()), "deploy", health_gate=True))
    idle = ("certificate", "postgresql", "redis", "schedule", "processes")  # no https, services, jobs
    every = [name for name in NAMES if name not in idle]
    # The processes follow the web once it passed the health gate.
    assert [line.split()[1] for line in lines if line.startswith("begin_step")] == [
        *every,
        "health",
        "processes",
    ]
    assert not plans(settings, converged_facts(settings))[0].acts


def test_outcome_counts_steps_and_stops_at_the_first_failure(capsys):
    stdout = "::step push changed\n::fail enable_site nginx -t rejected the new site\n"
    ok = report_outcome("h-outcome", ["provision", "push", "enable_site", "reload_nginx"],
                        {"push", "enable_site", "reload_nginx"}, Result(1, stdout, ""))  # fmt: skip
    assert not ok
    assert recap.current.hosts["h-outcome"].tally == recap.Tally(ok=1, changed=1, failed=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "h-outcome  enable_site  failed: nginx -t rejected the new site"


def test_a_script_that_dies_without_a_marker_names_its_last_error(capsys):
    assert not report_outcome("h-died", ["push"], {"push"}, Result(1, "", "line 3: oops\n"))
    assert capsys.readouterr().out.splitlines()[-1] == "h-died  push  failed: stopped: line 3: oops"


def test_notes_are_printed_after_their_step(capsys):
    stdout = "::note push other dependencies: gunicorn restarted\n::step push changed\n"
    assert report_outcome("h-note", ["push"], {"push"}, Result(0, stdout, ""))
    assert capsys.readouterr().out.splitlines() == [
        "h-note  push  changed",
        "h-note  push: other dependencies: gunicorn restarted",
    ]


@pytest.fixture
def tallies(fresh_run) -> Callable[[str], recap.Tally]:
    """A host's counts in this test's run."""
    return lambda host: fresh_run.hosts[host].tally


DEPLOY = ["provision", "push", "backup_default", "enable_site", "health"]
ACTING = {"provision", "push", "enable_site", "health"}  # backup_default: done already, says the plan


def fed(progress: Progress, output: bytes, capsys, size: int = 1) -> list[tuple[int, str]]:
    """The output given to `progress` in chunks of `size` bytes: each line it printed, with how many
    bytes had come when it did."""
    printed = []
    for end in range(size, len(output) + size, size):
        progress(output[end - size : end])
        printed += [(min(end, len(output)), text) for text in capsys.readouterr().out.splitlines()]
    return printed


def test_each_steps_line_is_printed_as_its_marker_arrives_with_its_time(capsys, tallies):
    output = (
        "::step provision changed 3.142\n"
        "Reading package lists... caf\u00e9\n"  # not a marker; split inside a character too
        "::note push other dependencies: gunicorn restarted\n"
        "::step push changed 12.04\n"
        "::step enable_site ok 0.012\n"
        "::step health ok 0.31\n"
    ).encode()
    progress = Progress("h-live", DEPLOY, ACTING)
    printed = fed(progress, output, capsys)
    assert progress.finish(Result(0, "", ""))
    assert [text for _, text in printed] == [
        "h-live  provision  changed         3.1 s",
        "h-live  push  changed             12.0 s",
        "h-live  push: other dependencies: gunicorn restarted",
        "h-live  backup_default  ok",  # between the steps around it, as the pipeline orders them
        "h-live  enable_site  ok            0.0 s",
        "h-live  health  ok                 0.3 s",
    ]
    # Each line as soon as the line of its marker ended, not a byte later; the notes with their step.
    ends = [output.index(marker) + len(marker) for marker in (b"3.142\n", b"12.04\n", b"0.012\n", b"0.31\n")]
    assert [at for at, _ in printed] == [ends[0], ends[1], ends[1], ends[2], ends[2], ends[3]]
    assert capsys.readouterr().out == ""  # finish: nothing left to say, something changed
    assert tallies("h-live") == recap.Tally(ok=3, changed=2, failed=0)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_the_lines_do_not_depend_on_how_the_output_is_cut(capsys, tallies, size):
    output = (
        b"::step provision ok 0.5\n::note push gunicorn restarted\n::step push changed 2\n::step health ok 1"
    )
    progress = Progress(f"h-cut{size}", ["provision", "push", "health"], {"provision", "push", "health"})
    printed = [text for _, text in fed(progress, output, capsys, size)]
    assert progress.finish(Result(0, "", ""))
    printed += capsys.readouterr().out.splitlines()  # the last line, which had no newline
    assert [text.split()[1:3] for text in printed] == [
        ["provision", "ok"], ["push", "changed"], ["push:", "gunicorn"], ["health", "ok"],
    ]  # fmt: skip
    assert all(text.endswith((" 0.5 s", " 2.0 s", " 1.0 s")) for text in printed if "restarted" not in text)


def test_a_failure_is_the_last_line_and_says_why(capsys, tallies):
    output = (
        b"::step provision changed 3.1\n::note push not shown: its step failed\n"
        b"::fail push release command exited 1: Error: no such table\n"
        b"::step enable_site ok 0.1\n"  # nothing after the first failure counts
    )
    progress = Progress("h-fails", DEPLOY, ACTING)
    printed = [text for _, text in fed(progress, output, capsys, 5)]
    assert not progress.finish(Result(1, "", ""))
    assert printed == [
        "h-fails  provision  changed         3.1 s",
        "h-fails  push  failed: release command exited 1: Error: no such table",
    ]
    assert capsys.readouterr().out == ""
    assert tallies("h-fails") == recap.Tally(ok=0, changed=1, failed=1)


def test_a_failure_before_any_step_follows_the_steps_the_plan_left_alone(capsys, tallies):
    progress = Progress("h-early", DEPLOY, ACTING - {"provision"})
    progress(b"::fail apply could not unpack the files sent\n")
    assert not progress.finish(Result(1, "", ""))
    assert capsys.readouterr().out.splitlines() == [
        "h-early  provision  ok",
        "h-early  apply  failed: could not unpack the files sent",
    ]


def test_steps_left_when_the_script_ended_are_ok_or_stopped(capsys, tallies):
    done = Progress("h-left", DEPLOY, {"provision"})
    done(b"::step provision ok 0.2\n")
    assert done.finish(Result(0, "", ""))
    assert capsys.readouterr().out.splitlines()[1:] == [
        "h-left  push  ok", "h-left  backup_default  ok", "h-left  enable_site  ok", "h-left  health  ok",
        "h-left  nothing changed",
    ]  # fmt: skip
    cut = Progress("h-cut", DEPLOY, ACTING)
    cut(b"::step provision ok 0.2\n")
    assert not cut.finish(Result(-1, "", ""))
    assert capsys.readouterr().out.splitlines()[1:] == [
        "h-cut  push  failed: stopped: the apply script exited -1"
    ]


def test_pack_makes_a_tar_owned_by_root(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    with tarfile.open(fileobj=io.BytesIO(pack({"files/a": b"A", "release/run.sh": script}))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("files/a").read() == b"A"
    assert members["release/run.sh"].mode == 0o755 and members["files/a"].mode == 0o644
    assert {m.uid for m in members.values()} == {0}


def project(root: Path, requires_python: str) -> Path:
    """An installable app that asks for a Python."""
    root.mkdir()
    (root / "app.py").write_text("app = None\n")
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "flaskr"\nversion = "1.0"\nrequires-python = "{requires_python}"\n'
        'dependencies = ["flask"]\n[build-system]\nrequires = ["flit_core"]\n'
    )
    return root


@pytest.fixture
def no_resolving(monkeypatch):
    def refused(*args):
        raise AssertionError(f"resolved{args}: the app should have been refused before")

    for name in ("dependencies", "app_wheel", "uv_wheel"):
        monkeypatch.setattr(wheels, name, refused)


def test_an_app_whose_requires_python_the_server_does_not_meet_is_refused_before_resolving(
    settings, tmp_path, no_resolving
):
    sit = situation(settings, fresh_facts(), ("push",))  # the server's Python: 3.11.2
    app = read_source(project(tmp_path / "app", ">=3.12"))
    with pytest.raises(Refused) as refused:
        push.prepare(sit, (app, declared_in(app.root, settings.app.gunicorn)))
    stop = str(refused.value)
    assert stop.startswith(
        "the app requires Python >=3.12 (requires-python in pyproject.toml) and the server has Python 3.11.2:"
    )
    assert "\n" not in stop


def test_an_app_whose_dependencies_cannot_be_read_is_refused_before_resolving(
    settings, tmp_path, no_resolving
):
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.py").write_text("app = None\n")
    with pytest.raises(Refused) as refused:
        push.read(replace(settings, app=replace(settings.app, src=root)))  # before anything connects
    assert "holds neither requirements.txt nor pyproject.toml" in str(refused.value)


def test_an_app_that_fits_gets_the_wheels_for_the_servers_full_python_and_uv_when_it_lacks_it(
    settings, tmp_path, monkeypatch
):
    asked = []
    built = (Path("/cache/flask-3.1.3-py3-none-any.whl"),)

    def dependencies(declared, target):
        asked.append(("dependencies", target))
        return built

    def app_wheel(app, project):
        asked.append(("app", project))
        return Path("/cache/flaskr-1.0.whl")

    def uv_wheel(machine):
        asked.append(("uv", machine))
        return Path("/cache/uv.whl")

    for fake in (dependencies, app_wheel, uv_wheel):
        monkeypatch.setattr(wheels, fake.__name__, fake)
    app = read_source(project(tmp_path / "app", ">=3.11.2"))
    declared = declared_in(app.root, settings.app.gunicorn)
    sit = push.prepare(situation(settings, fresh_facts(), ("push",)), (app, declared))
    target = wheels.Target("3.11.2", "x86_64", "2.36")
    assert asked == [("dependencies", target), ("app", "flaskr"), ("uv", "x86_64")]
    assert (sit.app, sit.wheels, sit.app_wheel, sit.uv_wheel) == (
        app, built, Path("/cache/flaskr-1.0.whl"), Path("/cache/uv.whl")
    )  # fmt: skip
    assert sit.declared is not None and sit.declared.project == "flaskr"
    # A server that holds the venv and uv already: only the app's own wheel, for the new release.
    asked.clear()
    holding = fresh_facts().having(
        Releases(venvs=frozenset({sit.venv_id}), tools=frozenset({f"uv-{wheels.UV_VERSION}"}))
    )
    again = push.prepare(situation(settings, holding, ("push",)), (app, declared))
    assert (asked, again.venv_id, again.wheels, again.uv_wheel) == (
        [("app", "flaskr")],
        sit.venv_id,
        (),
        None,
    )


def test_steps_after_provision_wait_for_its_packages_unless_they_run_beside_them(settings):
    found = plans(settings, fresh_facts())
    lines = apply_script(situation(settings, fresh_facts()), found, "deploy", True).lines
    begins = [n for n, text in enumerate(lines) if text.startswith("begin_step ")]
    waits = [n for n, text in enumerate(lines) if text == "await_packages"]
    named = {lines[n].split()[1]: n for n in begins}
    # push runs beside the install (it awaits it itself, before the switch); the next step waits first.
    assert named["provision"] < named["push"] < waits[1] < named["backup_default"]
    assert waits[0] < named["backup_default"] and len(waits) == 2
    assert lines[named["backup_default"] - 1] == "await_packages"
    # Nothing to install (a new release only): nothing to wait for.
    converged = converged_facts(settings)
    code_change = amended(converged, Releases, fingerprint="other")
    again = plans(settings, code_change)
    assert "push" in acting(again) and "provision" not in acting(again)
    assert "await_packages" not in apply_script(situation(settings, code_change), again, "deploy", True).lines
