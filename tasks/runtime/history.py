"""Append one entry to the deploy history: a JSON object a line, stamped with the server's UTC time.

    history.py FILE USER RELEASE ACTION RESULT DETAIL

Runs of a field's whitespace become one space and an empty field becomes "-", so every entry prints
as one row of the `fab history` table. Written with json's C half, as runtime/probe.py writes JSON: the
json module (re, enum) would take longer to import than this program takes to run.
"""

import os
import sys
import time

try:
    from _json import encode_basestring_ascii as json_string
except ImportError:  # a python3 built without it
    from json.encoder import encode_basestring_ascii as json_string

FIELDS = ("user", "release", "action", "result", "detail")


def entry(values):
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for field, value in zip(FIELDS, values, strict=False):
        record[field] = " ".join(value.split()) or "-"
    return record


if __name__ == "__main__":
    # Root's alone (failure details quote the app's error log); never through a link.
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as history:
        fields = entry(sys.argv[2:7]).items()
        history.write("{" + ", ".join(f"{json_string(k)}: {json_string(v)}" for k, v in fields) + "}\n")
