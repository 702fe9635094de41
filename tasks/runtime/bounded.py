"""The main process of a unit that runs third-party code (runtime/units.sh): a command, with the app's
environment added, ended at a time limit, its end told as an exit code.

    python3 -c "$PY_BOUNDED" TIMEOUT ENV_JSON COMMAND [ARG...]
    python3 -c "$PY_BOUNDED" TIMEOUT ENV_JSON - <<<"SHELL LINE"

- ENV_JSON: a JSON object of environment variables (app.env, kept in a file: never on a command line,
  where `ps` shows it) added to the environment; `-` for none.
- COMMAND `-`: a line of the user's (the release command, exec's) comes on stdin and runs with /bin/sh,
  reaching it in the environment, not as an argument: `ps` shows no process's arguments holding it (but
  what its own commands are given), neither this one's, nor systemd-run's.
- TIMEOUT: seconds; 0 for none. At the limit, the command's process group gets SIGTERM, then SIGKILL
  GRACE seconds later, and this exits 124, as timeout(1) does.
- The exit code is the command's, or 128+N when signal N ended it: systemd counts a main process that
  SIGTERM ended as a clean exit, which `systemd-run --wait` reports as 0.

What the command leaves behind (a daemon it started, a grandchild holding its output) is no concern
here: systemd ends every process of the unit once this one has exited.
"""

import json
import os
import sys
from _signal import SIGALRM, SIGKILL, SIGTERM, alarm, signal
from contextlib import suppress

GRACE = 10  # s between SIGTERM and SIGKILL at the time limit
TIMED_OUT = 124


def exit_code(status):
    """A wait status as a shell tells it: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# The shell runs the line it finds in its environment, which it takes out of it first: what the line
# starts does not inherit it.
SHELL = ("/bin/sh", "-c", 'line=$FLASKDEPLOY_LINE; unset FLASKDEPLOY_LINE; eval "$line"')


def main(timeout, env_file, command):
    if env_file != "-":
        with open(env_file) as handle:
            os.environ.update(json.load(handle))
    if command == ["-"]:
        line = sys.stdin.read()
        os.environ["FLASKDEPLOY_LINE"] = line[:-1] if line.endswith("\n") else line  # a here-string's
        command = list(SHELL)
    try:
        child = os.posix_spawnp(command[0], command, os.environ, setpgroup=0)
    except OSError as error:
        print(f"{command[0]}: {error.strerror}", file=sys.stderr)
        return 127
    ending = []  # the signals sent at the time limit, in order

    def expire(signum, frame):
        kill = SIGKILL if ending else SIGTERM
        ending.append(kill)
        with suppress(ProcessLookupError):  # gone between the limit and this
            os.killpg(child, kill)
        alarm(GRACE)

    if timeout:
        signal(SIGALRM, expire)
        alarm(timeout)
    status = os.waitpid(child, 0)[1]
    alarm(0)
    return TIMED_OUT if ending else exit_code(status)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: bounded.py TIMEOUT ENV_JSON COMMAND [ARG...] | -")
    sys.exit(main(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
