"""Versions of one test app, materialised into a temporary directory, each with its override.yaml.

    versions = AppVersions(tmp_path, name="reltest", port=8090)
    v1 = versions.make("v1")                        # serves "version v1" at /
    v3 = versions.make("v3", broken=True)           # raises at import
    run(fab, "-f", v1.override, "deploy")

Each copy is unique (a nonce in its release.json), so every deploy of a materialised version is a new
release, even of the same label. Its requirements.txt is the sample app's (app/requirements.txt), byte for
byte, unless `requirements_note` appends a comment: versions that share requirements share one venv on
the server and one wheel cache on the control machine, and the wheels resolve without an index.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).resolve().parent / "template"
SAMPLE_REQUIREMENTS = ROOT / "app" / "requirements.txt"
HEALTH_TIMEOUT = 15  # seconds; keeps a failing health gate short in tests


@dataclass(frozen=True)
class Version:
    label: str
    src: Path  # the app directory (app.src)
    override: Path  # the runtime config deploying it: `fab -f OVERRIDE ...`
    page: str  # what it serves at /

    def overlaid(self, workdir: Path, **sections: dict) -> Path:
        """A runtime config: this version's settings with `sections` laid over them, key by key."""
        settings = yaml.safe_load(self.override.read_text())
        for section, values in sections.items():
            settings[section] = (
                {**settings.get(section, {}), **values} if isinstance(values, dict) else values
            )
        path = workdir / f"config-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    @property
    def expected(self) -> str:
        """What a correct release of this label serves at / (differs from `page` for a wrong-page version)."""
        return f"version {self.label}"


class AppVersions:
    """Materialises versions of one app (same name and port: releases of one app on the server)."""

    def __init__(self, workdir: Path, name: str, port: int) -> None:
        self.workdir, self.name, self.port = workdir, name, port
        self.made = 0

    def make(
        self,
        label: str,
        *,
        broken: bool = False,
        unhealthy: bool = False,
        port: int | None = None,
        page: str | None = None,
        migration_fails: bool = False,
        release_command: str | None = None,
        keep_releases: int = 5,
        env: dict[str, str] | None = None,
        requirements_note: str | None = None,
        release_timeout: int | None = None,
        health_waits: bool = False,
        health_drips: bool = False,
    ) -> Version:
        """A new copy of the template app serving `page` (default "version LABEL") at /.

        broken: raises at import. unhealthy: imports and serves, but /health answers 500.
        port: this version's app.port (default: the app's). migration_fails: migrate.py exits 1.
        release_command, keep_releases, release_timeout and env go into the override (deploy.*, app.env).
        requirements_note: a comment appended to requirements.txt, so the version needs a venv of its own.
        health_waits: /health answers 503 (still starting) until the test creates instance/health.go.
        health_drips: /health answers 200 at once, then its body a byte every 2 s for a minute (the time
        each such answer began: a line of instance/drips.log).
        """
        self.made += 1
        base = self.workdir / f"{self.made:02d}-{label}"
        src = base / "app"
        shutil.copytree(TEMPLATE, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "instance"))
        requirements = SAMPLE_REQUIREMENTS.read_text()
        if requirements_note:
            requirements += f"# {requirements_note}\n"
        (src / "requirements.txt").write_text(requirements)
        page = page if page is not None else f"version {label}"
        release = {
            "version": label,
            "page": page,
            "broken": broken,
            "unhealthy": unhealthy,
            "migration_fails": migration_fails,
            "health_waits": health_waits,
            "health_drips": health_drips,
            "nonce": uuid.uuid4().hex,
        }
        (src / "release.json").write_text(json.dumps(release, indent=2) + "\n")
        settings = {
            "app": {
                "name": self.name,
                "src": str(src),
                "module": "app:app",
                "port": port or self.port,
                "server_name": "_",
                "health_path": "/health",
                "health_timeout": HEALTH_TIMEOUT,
                "env": dict(env or {}),
            },
            "deploy": {"keep_releases": keep_releases, "release_command": release_command},
        }
        if release_timeout is not None:
            settings["deploy"]["release_timeout"] = release_timeout
        override = base / "override.yaml"
        override.write_text(yaml.safe_dump(settings, sort_keys=False))
        return Version(label, src, override, page)
