"""A line as the kit prints and records it: app.env's values masked, no control characters.

    MASK_TEXT=TEXT mask.py ENV_JSON...

A failure's reason quotes what the app printed (a release command's last error line, gunicorn's error
log), and apps print their settings: a database URL with its password is the common case. Every value
(4 characters or more, as a check run masks them: tasks/check.py) of each ENV_JSON that exists (the
app.env of each release the run is about) becomes ****, longest first; a control character (a
terminal's escape) becomes `?`, a tab or newline a space. The text comes in the environment, not on
the command line, where `ps` would show it before it is masked.
"""

import json
import os
import sys

MASK = "****"
MASKED_FROM = 4


def values(paths):
    found = set()
    for path in paths:
        try:
            with open(path) as handle:
                env = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(env, dict):
            found.update(v for v in env.values() if isinstance(v, str) and len(v) >= MASKED_FROM)
    return sorted(found, key=len, reverse=True)


def plain(text):
    return "".join(c if c.isprintable() else " " if c.isspace() else "?" for c in text)


if __name__ == "__main__":
    text = os.environ.get("MASK_TEXT", "")
    for value in values(sys.argv[1:]):
        text = text.replace(value, MASK)
    print(plain(text))
