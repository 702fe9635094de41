"""The main process of each of the app's own processes (supervisor's programs, app.processes) and
scheduled jobs (systemd's timers, app.schedule): the user's command, run as Heroku runs a Procfile's
line, by bash -c, in the release it starts in, with app.env.

    python3 -I -S TOOLS_DIR/app_command.py COMMAND_FILE

- COMMAND_FILE: root's file holding the command line, as the settings give it. It reaches the shell as
  an argument of the shell's own, never through a config file of supervisor's or systemd's, which give
  meanings of their own to $, %, ; and quotes.
- The working directory is the release: supervisor and systemd enter `current`, which the kernel resolves
  then, so a process stays in the release it started in until it is restarted.
- The environment: the release's venv first on PATH, VIRTUAL_ENV, the app's own package on PYTHONPATH
  (as in_release_unit gives the release command), then app.env from the release's .deploy/env.json on
  top (an app.env value wins, as for the release command).
- The shell replaces this program (exec): what supervisor or systemd watches and signals is the shell,
  and bash execs the command itself when the line is a single command (a Procfile's usual line), so the
  command gets supervisor's SIGTERM and supervisor waits for it. Not /bin/sh: Debian's dash forks the
  command and waits, and dies of the SIGTERM at once: supervisor would take a worker still finishing
  its job for stopped, and start the next beside it.
"""

import json
import os
import sys

META = ".deploy"  # tasks/layout.py's META: the release's own files


def environment(release, base):
    env = dict(base)
    env.update(
        PATH=f"{release}/.venv/bin:/usr/local/bin:/usr/bin:/bin",
        VIRTUAL_ENV=f"{release}/.venv",
        PYTHONPATH=f"{release}/{META}/site",
        LANG=base.get("LANG", "C.UTF-8"),
    )
    try:
        with open(f"{release}/{META}/env.json") as handle:
            env.update(json.load(handle))
    except FileNotFoundError:
        pass
    return env


def main(command_file):
    with open(command_file) as handle:
        command = handle.read().rstrip("\n")
    release = os.getcwd()
    os.execve("/bin/bash", ["/bin/bash", "-c", command], environment(release, os.environ))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: app_command.py COMMAND_FILE")
    main(sys.argv[1])
