"""reload_nginx's part of the probe (runtime/probe.py runs it): whether nginx's config changed since
nginx loaded it.

    asked: {"conf_dir": DIR, "pid": PIDFILE, "loaded_stamp": PATH}
"""

import os


def gather(asked):
    return {"nginx_stale": nginx_stale(asked)}


def nginx_stale(asked):
    """Whether anything under nginx's config changed after nginx last (re)loaded it: after its pidfile
    was written (a start) or the kit's stamp was touched (a reload), whichever is later."""
    marks = (asked["pid"], asked["loaded_stamp"])
    loaded = [os.stat(p).st_mtime_ns for p in marks if os.path.exists(p)]
    if not loaded:
        return False
    since = max(loaded)
    for root, dirs, files in os.walk(asked["conf_dir"]):
        for name in [""] + dirs + files:
            try:
                if os.lstat(os.path.join(root, name)).st_mtime_ns > since:
                    return True
            except OSError:
                continue
    return False
