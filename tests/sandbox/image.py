"""Build and cache the sandbox images: a minimal Debian root and a local apt repository, per suite.

An image is what a fresh VPS looks like (systemd, sshd, sudo, python3) and lacks nginx, supervisor,
python3-venv, certbot, postgresql and redis-server; its repository holds those and their dependencies, so
`apt-get install` works in a sandbox with no internet. One image per Debian suite (SUITES), each cached on
its own.

    python -m tests.sandbox.image            # build (or find) every suite's image, at once
    python -m tests.sandbox.image trixie     # just one
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("SANDBOX_CACHE", "/var/cache/flaskdeploy-sandbox"))
BASE_PACKAGES = [
    "openssh-server", "sudo", "python3", "systemd", "systemd-sysv", "dbus", "iproute2",
    "procps", "curl", "ca-certificates", "netbase", "less",
]  # fmt: skip
SERVER_PACKAGES = ["nginx", "supervisor", "python3-venv", "certbot"]
# debootstrap does not resolve virtual packages: the packages providing those the others depend on, by name
# (python3-cryptography, for certbot, depends on python3-cffi-backend-api-min/-max).
PROVIDERS = ["python3-cffi-backend"]
# The app's services (services.postgresql, services.redis): downloaded into the repository with what they
# depend on, never installed in the image (their postinst would make a cluster and start servers).
SERVICE_PACKAGES = ["postgresql", "redis-server"]
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
RECIPE_VERSION = "4"


@dataclass(frozen=True)
class Suite:
    """A Debian release the sandboxes can run, and what differs in building its image."""

    name: str  # the suite debootstrap takes: "bookworm"
    version: str  # Debian's number for it: "12"
    python: str  # its python3's minor version: "3.11" (names the venv package to purge)

    @property
    def purge(self) -> list[str]:
        """Installed by debootstrap only to land their .debs in the repository; purged from the image."""
        return [
            "nginx", "nginx-common", "supervisor", "python3-venv", f"python{self.python}-venv",
            "python3-pip-whl", "python3-setuptools-whl", "certbot", "python3-certbot", "python3-acme",
        ]  # fmt: skip

    def recipe_hash(self) -> str:
        text = "|".join(
            [RECIPE_VERSION, self.name, *BASE_PACKAGES, "#", *SERVER_PACKAGES, *PROVIDERS,
             "#", *SERVICE_PACKAGES, "#", *self.purge, "#", *MASK, JOURNALD_CONF]
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:12]


BOOKWORM = Suite("bookworm", "12", python="3.11")
TRIXIE = Suite("trixie", "13", python="3.13")
SUITES = {suite.name: suite for suite in (BOOKWORM, TRIXIE)}
DEFAULT_SUITE = BOOKWORM.name


def suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"no sandbox image for suite {name!r}: choose one of {', '.join(SUITES)}") from None


def recipe_hash(suite_name: str = DEFAULT_SUITE) -> str:
    return suite(suite_name).recipe_hash()


def image_dir(suite_name: str = DEFAULT_SUITE) -> Path:
    return CACHE / f"image-{recipe_hash(suite_name)}"


def ensure_image(log=print, suite_name: str = DEFAULT_SUITE) -> Path:
    """Return the suite's cached image directory, building it first if needed (safe against concurrent
    callers: one lock per image, so two suites may build at once)."""
    target = image_dir(suite_name)
    if (target / "ready").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "ready").exists():
            _build(suite(suite_name), target, log)
    return target


def _run(*cmd: str, **kwargs) -> None:
    """Run quietly; on failure, raise with what the command printed."""
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({result.returncode}):\n{result.stdout[-3000:]}")


def _build(suite: Suite, target: Path, log) -> None:
    started = time.monotonic()
    work = target.with_name(target.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    rootfs, repo = work / "rootfs", work / "repo"
    work.mkdir(parents=True)
    log(f"sandbox: building Debian {suite.version} ({suite.name}) image in {target} (once; about a minute)")
    include = ",".join(BASE_PACKAGES + SERVER_PACKAGES + PROVIDERS)
    _run("debootstrap", "--variant=minbase", f"--include={include}", suite.name, str(rootfs))
    # From debootstrap's mirror (its sources.list), the services' packages and what the image lacks of
    # their dependencies, as provision installs them (no recommends).
    _chroot(rootfs, "apt-get", "update", "-q")
    _chroot(rootfs, "apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends",
            *SERVICE_PACKAGES)  # fmt: skip
    repo.mkdir()
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        shutil.move(deb, repo / deb.name)
    packages = subprocess.run(
        ["apt-ftparchive", "packages", "."], cwd=repo, check=True, capture_output=True
    ).stdout
    (repo / "Packages").write_bytes(packages)
    _chroot(rootfs, "apt-get", "purge", "-y", "-q", *suite.purge)
    _prepare_rootfs(rootfs)
    work.rename(target)
    (target / "ready").write_text(f"{time.monotonic() - started:.1f}\n")
    log(f"sandbox: {suite.name} image built in {time.monotonic() - started:.0f} s")


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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "suites", nargs="*", metavar="SUITE", help=f"which images ({', '.join(SUITES)}; default: all)"
    )
    names = list(dict.fromkeys(parser.parse_args().suites)) or list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        parser.error(f"no such suite: {', '.join(unknown)} (choose from {', '.join(SUITES)})")
    # Side by side: debootstrap often waits on the mirror (here 65 s for one, 105 s for two at once).
    with ThreadPoolExecutor(len(names)) as pool:
        built = list(pool.map(lambda name: ensure_image(lambda line: print(line, flush=True), name), names))
    for name, path in zip(names, built, strict=True):
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
