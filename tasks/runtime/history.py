"""Append one entry to the deploy history: a JSON object a line, stamped with the server's UTC time.

    history.py FILE USER RELEASE ACTION RESULT DETAIL

Runs of a field's whitespace become one space and an empty field becomes "-", so every entry prints
as one row of the `fab history` table.
"""

import json
import os
import sys
import time

FIELDS = ("user", "release", "action", "result", "detail")


def entry(values):
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for field, value in zip(FIELDS, values):
        record[field] = " ".join(value.split()) or "-"
    return record


if __name__ == "__main__":
    # Root's alone (failure details quote the app's error log); never through a link.
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as history:
        history.write(json.dumps(entry(sys.argv[2:7])) + "\n")
