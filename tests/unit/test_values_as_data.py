"""Settings reach server code only as data: with hostile values (command substitutions, backticks, quotes,
newlines) in every string setting validation allows, the scripts stay valid bash, no value appears in
their code, and the parts that need no server, run here under a scratch root, execute none of them."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest

from tasks.converge import apply_script, plan
from tasks.layout import health_host
from tasks.settings import SettingError, parse
from tasks.shell import VALUES_END
from tasks.steps import restart, rollback
from tests.unit.conftest import converged_facts, default_config, fresh_facts, plans, situation
from tests.unit.serverside import library, run_bash

# Where a setting goes in the config, and how a hostile text becomes its value.
SETTINGS = {
    "app.server_name": lambda text: text,
    "app.health_path": lambda text: "/" + text,
    "app.module": lambda text: text,
    "app.name": lambda text: text,
    "deploy.release_command": lambda text: text,
    "deploy.shared_dirs": lambda text: [text],
    "app.env": lambda text: {"SECRET_KEY": text},
}


def hostile_texts(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"$(touch {m})", f"$(touch${{IFS}}{m})", f"`touch {m}`", f"`touch${{IFS}}{m}`",
        f"x;touch${{IFS}}{m}", f"'; touch {m}; '", f'"; touch {m}; "', f"a\ntouch {m}",
        f"%0a$(touch${{IFS}}{m})", f"x&&touch${{IFS}}{m}",
    ]  # fmt: skip


def accepted(marker: Path) -> list[tuple[str, str, object]]:
    """(setting, text, value) for every hostile value that validation lets through."""
    found = []
    for setting, value_of in SETTINGS.items():
        section, key = setting.split(".")
        for text in hostile_texts(marker):
            config = default_config()
            config[section][key] = value_of(text)
            try:
                parse(config)
            except SettingError:
                continue
            found.append((setting, text, value_of(text)))
    return found


def scripts_for(config: dict) -> dict[str, str]:
    s = parse(config)
    fresh, converged = fresh_facts(), converged_facts(s)
    return {
        "deploy": apply_script(situation(s, fresh), plans(s, fresh), "deploy", True),
        "rollback": apply_script(
            situation(s, converged), plan(situation(s, converged), [rollback.step()]), "rollback", True
        ),
        "restart": apply_script(
            situation(s, converged), plan(situation(s, converged), [restart.step()]), "restart", True
        ),
    }


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_validation_lets_some_through_so_the_rest_of_this_module_tests_something(tmp_path):
    # A shell line and the app's environment take any text by design; a server name takes none of these.
    settings = {setting for setting, _, _ in accepted(tmp_path / "pwned")}
    assert settings == {"deploy.release_command", "app.env"}


@pytest.mark.parametrize("kind", ["deploy", "rollback", "restart"])
def test_hostile_values_stay_in_the_values_block_and_the_scripts_stay_valid_bash(kind, tmp_path):
    marker = tmp_path / "pwned"
    for setting, text, value in accepted(marker):
        section, key = setting.split(".")
        config = default_config()
        config[section][key] = value
        script = scripts_for(config)[kind]
        rendered = script.render()
        code = rendered[rendered.index(VALUES_END) :]
        assert text not in code, f"{setting}={text!r} is spliced into the {kind} script's code"
        if setting == "app.env":
            assert text not in rendered, "app.env travels in env.json only"
        checked = run_bash(f"bash -n <<'END_OF_SCRIPT'\n{rendered}\nEND_OF_SCRIPT")
        assert checked.returncode == 0, f"{setting}={text!r}: {checked.stderr}"


def test_running_what_needs_no_server_executes_no_hostile_value(tmp_path):
    marker = tmp_path / "pwned"
    cases = accepted(marker)
    port = closed_port()
    for setting, text, value in cases:
        section, key = setting.split(".")
        config = default_config()
        config[section][key] = value
        s = parse(config)
        script = scripts_for(config)["deploy"]
        scratch = tmp_path / "root"
        scratch.mkdir(exist_ok=True)
        q = shlex.quote
        test = f"""
cd {q(str(scratch))}
for name in CURRENT PREVIOUS RELEASES_DIR HISTORY_FILE ERROR_LOG; do
    printf -v "$name" '%s/%s' {q(str(scratch))} "$name"
done
HEALTH_URL={q(f"http://127.0.0.1:{port}{s.app.health_path or '/'}")} HEALTH_TIMEOUT=0 W={q(str(scratch))}
note_live_release
begin_step health
( gate )
( note_release r1; in_release_unit() {{ echo "not run: $*"; return 3; }}; run_release_command )
( die "a failure naming $HEALTH_HOST and $RELEASE_COMMAND" )
echo finished
"""
        done = run_bash(library(script) + test, cwd=scratch)
        assert done.stdout.rstrip().endswith("finished"), f"{setting}={text!r}: {done.stdout}\n{done.stderr}"
        assert not marker.exists(), f"{setting}={text!r} was executed:\n{done.stdout}"
        if setting == "app.server_name":
            assert f"(Host: {health_host(s)})" in done.stdout  # the gate's message shows it as it is
        if setting == "deploy.release_command":
            assert f"release command '{text}' exited 3" in done.stdout
        history = (scratch / "HISTORY_FILE").read_text()
        assert history.count("\n") == 3 and '"result": "failed"' in history
        (scratch / "HISTORY_FILE").unlink()
