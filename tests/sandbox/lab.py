"""A lab: a set of sandbox servers on one bridge, each a booted systemd-nspawn container.

Each sandbox runs one Debian suite (tests/sandbox/image.py: bookworm, trixie; a lab may mix them) and
has its own overlay over that suite's shared image, its own network namespace and address in
198.18.<lab>.0/24, its own cgroup (so teardown kills everything it ran), and its own SSH host key.
The lab writes an OpenSSH config and a known_hosts so `ssh -F` and `fab -S` work with strict host
key checking. State lives under STATE so `down` can clean up after a crashed run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.sandbox import image

STATE = Path(os.environ.get("SANDBOX_STATE", "/var/lib/flaskdeploy-sandbox/labs"))
CGROUP_ROOTS = [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd")]
REPO_PORT = 3142
PROXY_PORT = 2222
BOOT_TIMEOUT = 90
HALT_TIMEOUT = 10


class SandboxError(RuntimeError):
    pass


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SandboxError(f"{' '.join(cmd)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _poll(done: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Ask done() until it says yes or `timeout` seconds have passed; whether it said yes."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def _answers(address: str, port: int, banner: bytes = b"") -> bool:
    """Whether a TCP port accepts a connection (and greets with `banner`, when given)."""
    try:
        with socket.create_connection((address, port), timeout=1) as s:
            s.settimeout(2)
            return not banner or s.recv(64).startswith(banner)
    except OSError:
        return False


def _kill_pid(pid: int | None) -> None:
    if pid and _pid_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def gone() -> bool:
            _reap(pid)
            return not _pid_alive(pid)

        if not _poll(gone, 5):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _write_whole(path: Path, text: str) -> None:
    """Replace a file atomically: a reader sees the old text or the new, never a part."""
    part = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    part.write_text(text)
    os.replace(part, path)


def _spawn(cmd: list[str], log: Path) -> int:
    """Start a detached background process (own session, no terminal, output to a log); return its PID."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc.pid


@dataclass
class Sandbox:
    lab: Lab
    index: int
    proxy_pid: int | None = None
    runner_pid: int | None = None
    rtt_ms: int = 0
    suite: str = image.DEFAULT_SUITE

    @property
    def image(self) -> Path:
        return self.lab.images[self.suite]

    @property
    def name(self) -> str:
        return f"sandbox{self.index}"

    @property
    def address(self) -> str:
        return f"198.18.{self.lab.number}.{10 + self.index}"

    @property
    def ssh_port(self) -> int:
        return PROXY_PORT if self.proxy_pid else 22

    @property
    def netns(self) -> str:
        return f"fdsb{self.lab.number}-{self.index}"

    @property
    def veth(self) -> str:
        """Its end of the link to the lab's bridge (eth0 is the other, in its namespace)."""
        return f"fdsb{self.lab.number}v{self.index}"

    @property
    def cgroup(self) -> str:
        return f"flaskdeploy-sandbox-{self.lab.number}-{self.index}"

    @property
    def dir(self) -> Path:
        return self.lab.dir / self.name

    @property
    def merged(self) -> Path:
        return self.dir / "root"

    # ---- lifecycle -------------------------------------------------------------------------------
    def create(self) -> None:
        """Network namespace and host key: what survives a reset."""
        self.dir.mkdir(parents=True, exist_ok=True)
        hostkey = self.dir / "ssh_host_ed25519_key"
        if not hostkey.exists():
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(hostkey))
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        mac = f"02:fd:00:{self.lab.number:02x}:00:{self.index:02x}"
        _sh("ip", "-n", self.netns, "link", "set", "eth0", "address", mac)
        _sh("ip", "link", "set", self.veth, "master", self.lab.bridge, "up")
        _sh("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")

    def boot(self) -> None:
        """Lay a fresh overlay over the image, personalise it, and boot systemd in it."""
        upper, work = self.dir / "upper", self.dir / "work"
        for d in (upper, work, self.merged):
            d.mkdir(parents=True, exist_ok=True)
        lower = self.image / "rootfs"
        _sh("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}", str(self.merged))  # fmt: skip
        self._personalise()
        cgroups = []
        for root in CGROUP_ROOTS:
            (root / self.cgroup).mkdir(exist_ok=True)
            cgroups.append(str(root / self.cgroup / "cgroup.procs"))
        nspawn = (
            f"systemd-nspawn -q -D {self.merged} -b -M {self.name} --register=no --keep-unit"
            f" --network-namespace-path=/run/netns/{self.netns} --console=read-only"
            " --link-journal=no --resolv-conf=off --timezone=off"
        )
        # A loop so that `systemctl reboot` inside (nspawn exits 133) boots the container again.
        halting = self.dir / "halting"
        halting.unlink(missing_ok=True)
        runner = (
            "".join(f"echo $$ > {p}; " for p in cgroups)
            + f"while :; do {nspawn}; rc=$?; [ $rc -eq 133 ] && [ ! -e {halting} ] || exit $rc; done"
        )
        self.runner_pid = _spawn(["bash", "-c", runner], self.dir / "console.log")
        self.lab.save()
        self.wait_for_ssh()

    def _personalise(self) -> None:
        root = self.merged
        (root / "etc/hostname").write_text(self.name + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")
        for suffix in ("", ".pub"):
            src = self.dir / f"ssh_host_ed25519_key{suffix}"
            dst = root / f"etc/ssh/ssh_host_ed25519_key{suffix}"
            shutil.copyfile(src, dst)
            dst.chmod(0o600 if not suffix else 0o644)
        pub = self.lab.client_key.with_suffix(".pub").read_text()
        for home, owner in (("root", (0, 0)), ("home/deploy", self._deploy_ids())):
            ssh_dir = root / home / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            (ssh_dir / "authorized_keys").write_text(pub)
            for p in (ssh_dir, ssh_dir / "authorized_keys"):
                os.chown(p, *owner)
        repo = f"http://{self.lab.gateway}:{REPO_PORT}/{self.suite}/"  # its suite's repository
        (root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] {repo} ./\n")

    def _deploy_ids(self) -> tuple[int, int]:
        for line in (self.image / "rootfs/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "deploy":
                return int(fields[2]), int(fields[3])
        raise SandboxError(f"the {self.suite} image has no deploy user")

    def wait_for_ssh(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until sshd answers with its banner."""
        if _poll(lambda: _answers(self.address, 22, b"SSH-"), timeout, 0.1):
            return
        log = (self.dir / "console.log").read_text(errors="replace")[-2000:]
        raise SandboxError(f"{self.name}: sshd did not answer within {timeout:.0f} s\n{log}")

    def halt(self) -> None:
        """Kill everything the sandbox runs (its cgroup, its latency proxy) and unmount its overlay.

        Returns once every process of the sandbox is gone, reaped rather than just killed: the
        container's processes first, so that nspawn reaps its init and the runner reaps nspawn (and
        this process reaps the runner it started); then whatever is left, by the cgroup.
        """
        if self.proxy_pid:
            _kill_pid(self.proxy_pid)
            self.proxy_pid, self.rtt_ms = None, 0
            if self.dir.exists():
                self.lab.write_ssh_config()  # back to port 22 for the next boot
        unified = CGROUP_ROOTS[0] / self.cgroup
        if self.dir.exists():
            (self.dir / "halting").touch()  # the runner's loop must not boot the container again
        processes = _Processes(_cgroup_pids(unified))

        def all_gone() -> bool:
            return processes.gone() and not _cgroup_pids(unified)

        payload = unified / "payload"
        if payload.exists():
            _kill_cgroup(payload)
            _poll(all_gone, 5, 0.01)
        _kill_cgroup(unified)
        gone = _poll(all_gone, HALT_TIMEOUT, 0.01)
        self.runner_pid = None
        for root in CGROUP_ROOTS:
            _remove_cgroup(root / self.cgroup)
        if os.path.ismount(self.merged):
            _sh("umount", str(self.merged), check=False)
            if os.path.ismount(self.merged):
                _sh("umount", "-l", str(self.merged))
        (self.dir / "halting").unlink(missing_ok=True)
        self.lab.save()
        if not gone:
            left = processes.left() + _cgroup_pids(unified)
            raise SandboxError(f"{self.name}: processes left after {HALT_TIMEOUT} s: {left}")

    def destroy(self) -> None:
        """Halt, then remove the veth, the network namespace and all files. The veth goes first, by
        name: the kernel keeps a namespace (and a veth in it) while a socket of it lingers (FIN_WAIT2
        for up to a minute after a run under load), and a new lab with this number needs the name."""
        try:
            self.halt()
        finally:
            _sh("ip", "link", "del", self.veth, check=False)
            _sh("ip", "netns", "del", self.netns, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)

    def reset(self) -> None:
        """Back to a fresh server: same name, address and host key; everything else forgotten."""
        self.halt()
        shutil.rmtree(self.dir / "upper", ignore_errors=True)
        shutil.rmtree(self.dir / "work", ignore_errors=True)
        self.boot()

    def reboot(self) -> None:
        """`systemctl reboot` from inside, then wait until the new boot's sshd answers."""
        self.ssh("touch /run/sandbox-before-reboot")
        self.ssh("systemctl reboot", check=False)

        def new_boot_answers() -> bool:
            return _answers(self.address, 22, b"SSH-") and (
                self.ssh("test ! -e /run/sandbox-before-reboot", check=False).returncode == 0
            )

        if not _poll(new_boot_answers, BOOT_TIMEOUT, 0.2):
            raise SandboxError(f"{self.name}: did not come back from reboot")

    # ---- SSH latency -----------------------------------------------------------------------------
    def set_latency(self, rtt_ms: int) -> None:
        """Route SSH through a user-space proxy (port 2222) that adds rtt_ms of round-trip time."""
        if self.proxy_pid:
            _kill_pid(self.proxy_pid)
            self.proxy_pid = None
        self.rtt_ms = rtt_ms
        if rtt_ms > 0:
            proxy = [
                "ip", "netns", "exec", self.netns, sys.executable, "-m", "tests.sandbox.latency",
                "--listen", f"0.0.0.0:{PROXY_PORT}", "--to", "127.0.0.1:22", "--rtt-ms", str(rtt_ms),
            ]  # fmt: skip
            self.proxy_pid = _spawn(proxy, self.dir / "latency.log")
            if not _poll(lambda: _answers(self.address, PROXY_PORT), 10):
                raise SandboxError(f"{self.name}: latency proxy did not start")
        self.lab.write_ssh_config()
        self.lab.save()

    # ---- running commands ------------------------------------------------------------------------
    def ssh(
        self, command: str, user: str = "root", check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run a command on the sandbox with the OpenSSH client, host key checked strictly."""
        result = subprocess.run(
            ["ssh", "-F", str(self.lab.ssh_config), "-o", "BatchMode=yes", f"{user}@{self.name}", command],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise SandboxError(f"{self.name}: {command!r} exited {result.returncode}: {result.stderr}")
        return result

    def private_memory_kib(self) -> int:
        """Private (unshared) memory of every process the sandbox runs, in KiB."""
        total = 0
        for pid in _cgroup_pids(CGROUP_ROOTS[0] / self.cgroup):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def cpu_seconds(self) -> float:
        """CPU time every process of the sandbox has used since it booted (its cgroup's cpu.stat)."""
        for line in (CGROUP_ROOTS[0] / self.cgroup / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        raise SandboxError(f"{self.name}: no usage_usec in its cgroup's cpu.stat")


def _cgroup_pids(cgroup: Path) -> list[int]:
    pids = []
    for procs in cgroup.rglob("cgroup.procs"):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except OSError:
            continue
    return pids


def _kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process in a cgroup v2 subtree (cgroup.kill; by PID where the kernel lacks it)."""
    if not cgroup.exists():
        return
    try:
        (cgroup / "cgroup.kill").write_text("1")
    except OSError:
        for pid in _cgroup_pids(cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _remove_cgroup(cgroup: Path, timeout: float = 5) -> None:
    """Remove a cgroup tree, retrying while the kernel still counts exiting tasks in it."""

    def removed() -> bool:
        for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            cgroup.rmdir()
        return not cgroup.exists()

    if cgroup.exists():
        _poll(removed, timeout, 0.02)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state field on (state, ppid, ...), or None once the PID is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _zombie_parent(pid: int) -> int | None:
    """The parent that has yet to reap an exited process; None if the process runs or is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields and fields[0] in ("Z", "X") else None


class _Processes:
    """Processes followed by pidfd, so that a reused PID is never mistaken for one of them."""

    def __init__(self, pids: list[int]) -> None:
        self.fds: dict[int, int] = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                self.fds[pid] = os.pidfd_open(pid)

    def _gone(self, pid: int) -> bool:
        """Reaped (its PID is free), or exited and left to a parent outside the sandbox to reap.

        The runner is this process's child when this process started the sandbox: reap it here.
        """
        _reap(pid)
        try:
            signal.pidfd_send_signal(self.fds[pid], 0)
        except ProcessLookupError:
            return True
        parent = _zombie_parent(pid)
        return parent is not None and parent != os.getpid() and parent not in self.fds

    def gone(self) -> bool:
        for pid in list(self.fds):
            if self._gone(pid):
                os.close(self.fds.pop(pid))
        return not self.fds

    def left(self) -> list[str]:
        return [f"{pid} {(_stat_fields(pid) or ['?'])[0]}" for pid in self.fds]

    def __del__(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Lab:
    """Sandboxes sharing one bridge, one client key, one SSH config and one apt repository server.

    The repository server serves `repos/`: a link per suite in use to its image's repository.
    """

    number: int
    owner_pid: int = 0
    repo_pid: int | None = None
    sandboxes: dict[int, Sandbox] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)  # suite -> its image, for the suites in use
    log: Callable[[str], object] = field(default=print, repr=False)  # says when an image is being built

    @property
    def dir(self) -> Path:
        return STATE / str(self.number)

    @property
    def bridge(self) -> str:
        return f"fdsb{self.number}"

    @property
    def gateway(self) -> str:
        return f"198.18.{self.number}.1"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def repos(self) -> Path:
        return self.dir / "repos"

    # ---- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def create(cls, owner_pid: int = 0, log=print) -> Lab:
        """Claim a free lab number (an atomic mkdir), build the bridge and start the apt repository.

        The default suite's image is made ready here (built on first use); another suite's on the first
        start of a sandbox of it.
        """
        default_image = image.ensure_image(log)
        STATE.mkdir(parents=True, exist_ok=True)
        for number in range(1, 255):
            try:
                (STATE / str(number)).mkdir()
            except FileExistsError:
                continue
            lab = cls(number=number, owner_pid=owner_pid, log=log)
            break
        else:
            raise SandboxError(f"no free lab number under {STATE}; run `python -m tests.sandbox down`")
        lab.save()
        lab._add_image(image.DEFAULT_SUITE, default_image)
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sandbox-client", "-f", str(lab.client_key))
        _sh("ip", "link", "add", lab.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{lab.gateway}/24", "dev", lab.bridge)
        _sh("ip", "link", "set", lab.bridge, "up")
        lab.repo_pid = _spawn(
            [sys.executable, "-m", "http.server", str(REPO_PORT), "--bind", lab.gateway,
             "--directory", str(lab.repos)],
            lab.dir / "repo.log",
        )  # fmt: skip
        lab.save()
        return lab

    def _add_image(self, suite: str, path: Path) -> None:
        """Use this image for the suite's sandboxes, and serve its repository at /SUITE/."""
        self.images[suite] = path
        self.repos.mkdir(exist_ok=True)
        link = self.repos / suite
        link.unlink(missing_ok=True)
        link.symlink_to(path / "repo")
        self.save()

    def start(self, count: int, suite: str = image.DEFAULT_SUITE) -> list[Sandbox]:
        """Start `count` more sandboxes of a Debian suite; return them once each answers on SSH."""
        if suite not in self.images:
            self._add_image(suite, image.ensure_image(self.log, suite_name=suite))
        first = max(self.sandboxes, default=0) + 1
        new = [Sandbox(self, i, suite=suite) for i in range(first, first + count)]
        for sandbox in new:
            self.sandboxes[sandbox.index] = sandbox
            sandbox.create()
        self.write_ssh_config()
        for sandbox in new:
            sandbox.boot()
        return new

    def remove(self, sandbox: Sandbox) -> None:
        """Destroy one sandbox; returns once every process of it is gone."""
        try:
            sandbox.destroy()
        finally:
            self.sandboxes.pop(sandbox.index, None)
            self.write_ssh_config()
            self.save()

    def destroy(self) -> None:
        """Tear everything down: containers, mounts, namespaces, links, processes, files.

        Returns once every process of every sandbox is gone; a sandbox that fails to go does not stop
        the others from being torn down (its error is raised at the end).
        """
        errors = []
        while self.sandboxes:
            _, sandbox = self.sandboxes.popitem()
            try:
                sandbox.destroy()
            except SandboxError as error:
                errors.append(error)
        _kill_pid(self.repo_pid)
        _sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise SandboxError("; ".join(map(str, errors)))

    # ---- files -----------------------------------------------------------------------------------
    def write_ssh_config(self) -> None:
        entries, known = [], []
        for s in self.sandboxes.values():
            entries.append(
                f"Host {s.name}\n  HostName {s.address}\n  Port {s.ssh_port}\n  User root\n"
                f"  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
            )
            key = " ".join((s.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
            known.append(f"{s.address},[{s.address}]:{PROXY_PORT} {key}\n")
        # Whole or not at all: sandboxes reset at once (threads) rewrite these while ssh and fab read them.
        _write_whole(self.ssh_config, "\n".join(entries))
        _write_whole(self.known_hosts, "".join(known))

    def save(self) -> None:
        data = {
            "number": self.number,
            "owner_pid": self.owner_pid,
            "repo_pid": self.repo_pid,
            "images": {suite: str(path) for suite, path in self.images.items()},
            "sandboxes": {
                i: {
                    "runner_pid": s.runner_pid,
                    "proxy_pid": s.proxy_pid,
                    "rtt_ms": s.rtt_ms,
                    "suite": s.suite,
                }
                for i, s in self.sandboxes.items()
            },
        }
        (self.dir / "lab.json").write_text(json.dumps(data))

    @classmethod
    def load(cls, number: int) -> Lab:
        path = STATE / str(number) / "lab.json"
        data = json.loads(path.read_text()) if path.exists() else {"number": number, "sandboxes": {}}
        images = data.get("images") or {image.DEFAULT_SUITE: data.get("image") or image.image_dir()}
        lab = cls(
            number=number,
            owner_pid=data.get("owner_pid", 0),
            repo_pid=data.get("repo_pid"),
            images={suite: Path(path) for suite, path in images.items()},
        )
        for i, s in data["sandboxes"].items():
            lab.sandboxes[int(i)] = Sandbox(
                lab, int(i), proxy_pid=s["proxy_pid"], runner_pid=s["runner_pid"], rtt_ms=s["rtt_ms"],
                suite=s.get("suite", image.DEFAULT_SUITE),
            )  # fmt: skip
        return lab


def existing_labs() -> list[Lab]:
    if not STATE.exists():
        return []
    return [Lab.load(int(p.name)) for p in STATE.iterdir() if p.name.isdigit()]


def sweep_orphans() -> None:
    """Tear down labs left behind by test runs that died (their owner process is gone)."""
    for lab in existing_labs():
        if lab.owner_pid and not _pid_alive(lab.owner_pid):
            lab.destroy()
