"""push's part of the probe (runtime/probe.py runs it): the releases, the live release's fingerprint,
the venvs, the wheels and the kit's tools the server keeps.

    asked: {"releases_dir", "venvs_dir", "wheels_dir", "tools_dir", "current": PATH, "meta": NAME}
"""

import os

from probe import entries, read_text


def gather(asked):
    venvs_dir = asked["venvs_dir"]
    venvs = entries(venvs_dir)
    return {
        "releases": releases(asked["releases_dir"], asked["meta"]),
        "fingerprint": read_text(os.path.join(asked["current"], asked["meta"], "fingerprint")).strip(),
        "venv_dirs": venvs,
        "venvs": [name for name in venvs if os.path.exists(os.path.join(venvs_dir, name, ".complete"))],
        "wheels": entries(asked["wheels_dir"]),
        "tools": entries(asked["tools_dir"]),
    }


def releases(releases_dir, meta):
    """Each release with the venv it runs on, its record (release.json's text: the control machine
    parses it) and why it failed, if it did."""
    found = []
    for name in entries(releases_dir):
        path = os.path.join(releases_dir, name)
        if not os.path.isdir(path):
            continue
        try:
            venv = os.readlink(os.path.join(path, ".venv"))
        except OSError:
            venv = ""
        record = read_text(os.path.join(path, meta, "release.json"))
        failed = read_text(os.path.join(path, meta, "failed")).split("\n")[0]
        found.append({"id": name, "venv": venv, "record": record, "failed": failed})
    return found
