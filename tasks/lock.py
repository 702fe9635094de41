"""The deploy lock, as the control machine sees it: what a run's scripts tell runtime/lock.sh, and the
exit code of a run that found the lock held."""

from __future__ import annotations

import re

from tasks.platform import SSHD_PROCESS_NAMES

LOCKED_EXIT = 75  # EX_TEMPFAIL: try again later (runtime/lock.sh exits with it too)


def values(lock_root: str, app: str, holder: str, action: str) -> dict[str, str | tuple[str, ...]]:
    """The lock's values for a script: where it is, and who takes it for what ("alice@laptop (deploy)")."""
    return {
        "LOCK_ROOT": lock_root,
        "APP": app,
        "LOCK_HOLDER": f"{_plain(holder)} ({_plain(action)})",
        "SSHD_PROCESS_NAMES": SSHD_PROCESS_NAMES,
    }


def _plain(text: str) -> str:
    """Names as the lock's record shows them: one word each."""
    return re.sub(r"[^A-Za-z0-9@._-]", "_", text)
