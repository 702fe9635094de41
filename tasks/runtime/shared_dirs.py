"""Make the shared directories (deploy.shared_dirs) the server lacks, as root, never through a link.

    shared_dirs.py SHARED_DIR APP_USER DIR...

Each DIR (relative to SHARED_DIR, like instance/uploads) is made with its parents: a parent made here
is root's and the app's group's (750), the DIR itself the app's (750); what exists already is left as it
is. A parent may be the app's to write (instance/ is): had root checked a path and then acted on it,
the app's user could switch a part of it for a link in between, and have root make or chown what the
link names. So every step is relative to a directory already open, opened without following a link
(O_NOFOLLOW): a part that is a link, or no directory, is refused, and the owner is set on the directory
opened, never on a path. Exit 1 with the reason as the last line.
"""

import os
import pwd
import sys

OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make(shared_fd, relative, uid, gid):
    """SHARED_DIR/relative, each missing part made in the part above it, opened as it was made."""
    parts = relative.split("/")
    fd = os.dup(shared_fd)
    try:
        for depth, part in enumerate(parts, 1):
            try:
                os.mkdir(part, 0o750, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            try:
                inner = os.open(part, OPEN, dir_fd=fd)
            except OSError:  # a link (ELOOP), or no directory (ENOTDIR)
                where = "/".join(parts[:depth])
                raise SystemExit(
                    f"{where} is a symbolic link or no directory, which root will not follow"
                ) from None
            os.close(fd)
            fd = inner
            if made:
                os.fchown(fd, uid if depth == len(parts) else 0, gid)
                os.fchmod(fd, 0o750)
    finally:
        os.close(fd)


def main(shared_dir, user, relatives):
    account = pwd.getpwnam(user)
    shared_fd = os.open(shared_dir, OPEN)
    try:
        for relative in relatives:
            try:
                make(shared_fd, relative, account.pw_uid, account.pw_gid)
            except SystemExit as refused:
                raise SystemExit(
                    f"{shared_dir}/{refused.code}: remove it (the app's user may have made it)"
                ) from None
    finally:
        os.close(shared_fd)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
