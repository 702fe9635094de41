"""provision's part of the probe (runtime/probe.py runs it): which of the packages the kit needs are
installed, and how old the package lists are.

    asked: {"query": ARGV, "packages": [NAME...], "installed": STATUS, "lists": DIR}
"""

import os
import time

from probe import output


def gather(asked):
    status = packages(asked["query"], asked["packages"])
    return {
        "installed": [name for name in asked["packages"] if status.get(name) == asked["installed"]],
        "package_lists_age": package_lists_age(asked["lists"]),
    }


def packages(query, names):
    """Package name -> its status in the package manager, for the packages the kit needs."""
    found = {}
    for line in output(query + names).splitlines():
        name, _, status = line.partition("\t")
        found[name] = status
    return found


def package_lists_age(directory):
    """Seconds since the package lists were updated; None when there are none (a fresh server)."""
    newest = None
    try:
        for entry in os.scandir(directory):
            if "Packages" in entry.name and entry.is_file(follow_symlinks=False):
                mtime = entry.stat(follow_symlinks=False).st_mtime
                newest = mtime if newest is None else max(newest, mtime)
    except OSError:
        pass
    return None if newest is None else int(time.time() - newest)
