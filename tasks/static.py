"""Static files that nginx serves itself, from the live release: which directories, at which URL prefixes.

`app.static` maps URL prefixes to directories of the app (relative to app.src). Left empty, the Flask
app's own static folder is served at /static/ when it has one, found the way Flask finds its root path
but without importing the app: module "a.b:app" is package a/b/ (a/b/__init__.py) or module a/b.py
(root a/), in app.src or under its src/ (a src layout); the folder is ROOT/static.

nginx serves each one from `current/DIR/` (configs/nginx-site.conf.j2), so gunicorn never sees those
requests; each release opens its static directories, and only them, to nginx's workers
(runtime/static.sh's open_static, run by push right after the release is built).
"""

from __future__ import annotations

from pathlib import Path

from tasks.settings import Settings
from tasks.shell import Var, line

FLASK_PREFIX = "/static/"


def flask_root(src: Path, module: str) -> Path | None:
    """The local directory Flask takes as the app's root path for `module` ("a.b:app"), if it is found."""
    parts = module.split(":", 1)[0].split(".")
    for base in (src, src / "src"):
        package = base.joinpath(*parts)
        if (package / "__init__.py").is_file():
            return package
        if package.with_name(f"{parts[-1]}.py").is_file():
            return package.parent
    return None


def folders(s: Settings, src: Path) -> dict[str, str]:
    """URL prefix -> directory of the app (relative to `src`, app.src) that nginx serves, sorted by prefix:
    app.static, or (when it is empty) the Flask app's static folder at /static/ when it has one."""
    if s.app.static:
        return dict(sorted(s.app.static.items()))
    root = flask_root(src, s.app.module)
    if root is None or not (root / "static").is_dir():
        return {}
    return {FLASK_PREFIX: (root / "static").relative_to(src).as_posix()}


def _in_app(src: Path, directory: str) -> bool:
    """Whether `directory` is a directory of the app, reached through no symbolic link (whose files a
    release would not hold)."""
    path = src
    for part in directory.split("/"):
        path = path / part
        if path.is_symlink():
            return False
    return path.is_dir()


def refusal(s: Settings, src: Path) -> str | None:
    """Why the static directories cannot be served from a release of the app in `src`, if they cannot."""
    for prefix, directory in folders(s, src).items():
        if prefix == "/":
            return (
                "app.static: / would take every request from the app: serve static files under a prefix"
                " like /static/"
            )
        if not _in_app(src, directory):
            return (
                f"app.static: {directory} is not a directory of the app (in {src}): create it, or map"
                f" {prefix} to a directory the app has"
            )
        shared = next((d for d in s.deploy.shared_dirs if f"{directory}/".startswith(f"{d}/")), None)
        if shared is not None:
            return (
                f"app.static: {directory} is in the shared directory {shared} (deploy.shared_dirs), not in a"
                " release: map a directory of the app's code"
            )
    return None


def commands(s: Settings, src: Path) -> list[str]:
    """The line that opens the static directories of the release this run built (BUILT) to nginx's
    workers; none when nginx serves none."""
    directories = sorted(set(folders(s, src).values()))
    return [line("open_static", Var("BUILT"), *directories)] if directories else []
