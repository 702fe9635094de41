"""The test app's worker: `python worker.py [JOB_SECONDS | crash]`.

It notes each of its moves in instance/workers.log (the shared folder, linked into every release), a line
each: `start PID VERSION CWD USER GREETING` when it starts, `term PID` when SIGTERM comes, and `done PID`
once the job in flight (JOB_SECONDS, default 2) is finished after it, before it exits. With `crash` it
exits at once with status 1, as a worker that cannot start does.
"""

import os
import pwd
import signal
import sys
import time
from pathlib import Path

LOG = Path("instance") / "workers.log"
VERSION = Path(__file__).with_name("version.txt").read_text().split()[0]


def note(text: str) -> None:
    with open(LOG, "a") as log:
        log.write(f"{text}\n")


def main(argument: str) -> int:
    if argument == "crash":
        print("worker cannot start: crash on purpose", flush=True)
        return 1
    job = float(argument or 2)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    user = pwd.getpwuid(os.getuid()).pw_name
    note(f"start {os.getpid()} {VERSION} {os.getcwd()} {user} {os.environ.get('GREETING', '-')}")
    print(f"worker {os.getpid()} started, version {VERSION}", flush=True)
    while not stopping:
        time.sleep(0.1)
    note(f"term {os.getpid()}")
    time.sleep(job)  # the job in flight, finished before the worker exits
    note(f"done {os.getpid()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
