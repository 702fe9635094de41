"""Build and cache the sandbox image: a minimal Debian 12 root and a local apt repository.

The image is what a fresh VPS looks like (systemd, sshd, sudo, python3) and lacks nginx, supervisor
and python3-venv; the repository holds those and their dependencies, so `apt-get install` works in a
sandbox with no internet.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("SANDBOX_CACHE", "/var/cache/flaskdeploy-sandbox"))
SUITE = "bookworm"
BASE_PACKAGES = [
    "openssh-server", "sudo", "python3", "systemd", "systemd-sysv", "dbus", "iproute2",
    "procps", "curl", "ca-certificates", "netbase", "less",
]  # fmt: skip
SERVER_PACKAGES = ["nginx", "supervisor", "python3-venv"]
# Installed by debootstrap only to land their .debs in the repository; purged from the image.
PURGE = [
    "nginx", "nginx-common", "supervisor", "python3-venv", "python3.11-venv",
    "python3-pip-whl", "python3-setuptools-whl",
]  # fmt: skip
# Units a throwaway server does not need: they fail in a container, wake up on timers, or hold memory
# (a getty on the console nspawn only reads, logind for sessions nothing asks for). Masked, not removed:
# sshd, systemd as PID 1, journald, dbus, apt, and whatever a deploy installs still run as on a VPS.
MASK = [
    "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "systemd-tmpfiles-clean.timer",
    "systemd-pstore.service", "console-getty.service", "getty@tty1.service", "systemd-logind.service",
]  # fmt: skip
# journald keeps its files small: it maps what it writes, so a default-sized journal is megabytes of
# private memory per sandbox.
JOURNALD_CONF = "[Journal]\nSystemMaxFileSize=1M\nSystemMaxUse=4M\nRuntimeMaxUse=2M\n"
RECIPE_VERSION = "2"


def recipe_hash() -> str:
    text = "|".join(
        [RECIPE_VERSION, SUITE, *BASE_PACKAGES, "#", *SERVER_PACKAGES, "#", *PURGE, "#", *MASK, JOURNALD_CONF]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_dir() -> Path:
    return CACHE / f"image-{recipe_hash()}"


def ensure_image(log=print) -> Path:
    """Return the cached image directory, building it first if needed (safe against concurrent callers)."""
    target = image_dir()
    if (target / "ready").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "ready").exists():
            _build(target, log)
    return target


def _run(*cmd: str, **kwargs) -> None:
    """Run quietly; on failure, raise with what the command printed."""
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({result.returncode}):\n{result.stdout[-3000:]}")


def _build(target: Path, log) -> None:
    started = time.monotonic()
    work = target.with_name(target.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    rootfs, repo = work / "rootfs", work / "repo"
    work.mkdir(parents=True)
    log(f"sandbox: building Debian {SUITE} image in {target} (once; about a minute)")
    include = ",".join(BASE_PACKAGES + SERVER_PACKAGES)
    _run("debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(rootfs))
    repo.mkdir()
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        shutil.move(deb, repo / deb.name)
    packages = subprocess.run(
        ["apt-ftparchive", "packages", "."], cwd=repo, check=True, capture_output=True
    ).stdout
    (repo / "Packages").write_bytes(packages)
    _chroot(rootfs, "apt-get", "purge", "-y", "-q", *PURGE)
    _prepare_rootfs(rootfs)
    work.rename(target)
    (target / "ready").write_text(f"{time.monotonic() - started:.1f}\n")
    log(f"sandbox: image built in {time.monotonic() - started:.0f} s")


def _chroot(rootfs: Path, *cmd: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
    _run("chroot", str(rootfs), *cmd, env=env)


def _prepare_rootfs(rootfs: Path) -> None:
    """Things every sandbox shares: a sudo user, no host keys (each sandbox gets its own), lean boot."""
    _chroot(rootfs, "useradd", "--create-home", "--shell", "/bin/bash", "deploy")
    (rootfs / "etc/sudoers.d/deploy").write_text("deploy ALL=(ALL) NOPASSWD:ALL\n")
    (rootfs / "etc/sudoers.d/deploy").chmod(0o440)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/ssh/sshd_config.d/sandbox.conf").write_text(
        "PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
    )
    _chroot(rootfs, "systemctl", "mask", *MASK)
    (rootfs / "etc/systemd/journald.conf.d").mkdir(exist_ok=True)
    (rootfs / "etc/systemd/journald.conf.d/sandbox.conf").write_text(JOURNALD_CONF)
    _chroot(rootfs, "systemctl", "enable", "ssh.service")
    (rootfs / "etc/apt/sources.list").write_text("")
    for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    (rootfs / "etc/machine-id").write_text("")


if __name__ == "__main__":
    print(ensure_image())
