"""The kit against Ansible and pyinfra doing the same deploy job, on sandbox servers. Prints a table of
medians and our ratio to each tool (run as root).

    .venv/bin/python -m bench [--rounds 5] [--rtt 0 50] [--tools ours,ansible,pyinfra]
                              [--cases cold,noop,code,rollback,fleet,stack] [--hosts 1 4 8]
    .venv/bin/python -m bench --smoke [--tools ours[,TOOL]]   # one round, RTT 0, the cold case: for CI

The job (the same for every tool): apt install nginx supervisor (from the sandbox's apt repository), the
app user, /srv/<name>/releases/<id> with the app's files, a venv built from the wheels the kit's cache
has (the servers have no index), the nginx site and supervisor program (the kit's own, rendered once
with tasks.configs), the `current` switch, reloads, a health check GET / through nginx. The job files
are bench/ansible/deploy.yml (ansible-core, pipelining and ControlPersist on) and bench/pyinfra/deploy.py;
each tool is pip-installed, pinned, into its own venv under /var/cache/flaskdeploy-bench.

Per round, per RTT, per tool (the tools' order turns from round to round), on freshly reset sandboxes:
  cold      a deploy to a fresh server
  noop      the same deploy again: nothing changes, nothing restarts
  code      one app file changed, with 20 clients loading the site through nginx (failed requests counted)
  rollback  back to the release before
  fleet     no-op deploys to N hosts at once (one command, every host), then code-change deploys, for
            each N of --hosts
  stack     ours only, on a server reset again: a cold deploy of a whole app (tests/apps/stack: a worker
            from its Procfile, a scheduled job, PostgreSQL and Redis), then a code change of it (the web
            reloaded, the worker moved to the new release)
Times are whole command runs, as a user sees them (interpreter start included). SSH connections and
remote commands are counted per run from each sandbox's sshd log (LogLevel DEBUG1, set by the bench):
"Accepted publickey" lines are connections; "req exec" and "subsystem request" lines are commands.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests import fab
from tests.load import Load
from tests.sandbox.lab import Lab, Sandbox

HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("FLASKDEPLOY_BENCH_CACHE", "/var/cache/flaskdeploy-bench"))
PINS = {"ansible": "ansible-core==2.19.14", "pyinfra": "pyinfra==3.10.0"}
TOOLS = ("ours", "ansible", "pyinfra")
CASES = ("cold", "noop", "code", "rollback", "fleet", "stack")
STACK = fab.ROOT / "tests" / "apps" / "stack"
TARGET_PYTHON, TARGET_MACHINE, TARGET_GLIBC = "3.11.2", "x86_64", "2.36"  # the sandbox: Debian 12


class BenchError(RuntimeError):
    pass


@dataclass
class Sample:
    seconds: float
    connections: int = 0
    commands: int = 0
    failed_requests: int | None = None


@dataclass
class Results:
    samples: dict[tuple[str, int, str], list[Sample]] = field(default_factory=dict)  # (case, rtt, tool)

    def add(self, case: str, rtt: int, tool: str, sample: Sample) -> None:
        self.samples.setdefault((case, rtt, tool), []).append(sample)


# ---- the tools --------------------------------------------------------------------------------------
def tool_venv(tool: str, log=print) -> Path:
    """The tool's own venv, made once with pip from the package registry; its bin directory."""
    venv = VENVS / f"venv-{tool}"
    marker = venv / f".installed-{PINS[tool]}"
    if not marker.exists():
        log(f"installing {PINS[tool]} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", PINS[tool]], check=True)
        marker.touch()
    return venv / "bin"


@dataclass
class Job:
    """What every tool deploys: the app, its release id, the wheels and the kit's rendered configs."""

    work: Path
    app: Path
    wheels: Path
    configs: Path
    override: Path
    name: str
    releases: list[str] = field(default_factory=list)  # ids deployed, in order (for the tools' rollback)

    @property
    def release(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(p for p in self.app.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(self.app)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:12]

    def change_code(self) -> None:
        (self.app / "bench_marker.py").write_text(f"VALUE = {time.time_ns()}\n")


def make_job(app_src: Path, module: str) -> Job:
    from tasks import configs, dependencies, wheels
    from tasks.layout import layout
    from tasks.platform import DEBIAN_12
    from tasks.settings import parse

    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    app = work / "app"
    shutil.copytree(app_src, app, ignore=shutil.ignore_patterns("__pycache__", "instance"))
    override = work / "override.yaml"
    settings = {"app": {"src": str(app), "module": module}}
    override.write_text(yaml.safe_dump(settings))
    base = yaml.safe_load((fab.ROOT / "invoke.yaml").read_text())
    merged = {k: {**(base.get(k) or {}), **(settings.get(k) or {})} for k in ("app", "deploy")}
    s = parse(merged)
    paths = layout(s, DEBIAN_12)
    rendered = work / "configs"
    rendered.mkdir()
    (rendered / "nginx-site").write_text(configs.nginx_site(s, paths, DEBIAN_12))
    (rendered / "supervisor.conf").write_text(configs.supervisor_program(s, paths))
    (rendered / "gunicorn.conf.py").write_text(configs.gunicorn_conf(s, paths, os.cpu_count() or 1))
    target = wheels.Target(TARGET_PYTHON, TARGET_MACHINE, TARGET_GLIBC)
    wheel_dir = work / "wheels"
    wheel_dir.mkdir()
    for wheel in wheels.dependencies(dependencies.declared(app, s.app.gunicorn), target):
        shutil.copy2(wheel, wheel_dir)
    return Job(work, app, wheel_dir, rendered, override, s.app.name)


def stack_job(work: Path) -> Job:
    """The whole app as ours deploys it: tests/apps/stack with its worker, a job, both services."""
    work = Path(tempfile.mkdtemp(dir=work, prefix="stack-"))  # each round's own copy
    app = work / "stack"
    shutil.copytree(STACK, app, ignore=shutil.ignore_patterns("__pycache__"))
    override = work / "stack.yaml"
    settings = {
        "app": {
            "name": "stack", "port": 8097, "src": str(app), "module": "stack:create_app()",
            "schedule": {"tick": {"command": "python -m stack.tick", "when": "hourly"}},
        },
        "services": {"postgresql": True, "redis": True},
    }  # fmt: skip
    override.write_text(yaml.safe_dump(settings))
    return Job(work, app, work, work, override, "stack")


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(
        cmd, cwd=cwd or fab.ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise BenchError(f"{' '.join(cmd[:4])}... exited {done.returncode} after {seconds:.1f} s:\n{tail}")
    return seconds


def run_ours(lab: Lab, hosts: list[Sandbox], job: Job, action: str) -> float:
    names = ",".join(s.name for s in hosts)
    done = fab.run(lab.ssh_config, names, "-f", str(job.override), action, timeout=900)
    if done.code != 0:
        raise BenchError(str(done))
    return done.seconds


def _vars(lab: Lab, job: Job, release: str) -> dict[str, str]:
    return {
        "app_name": job.name, "app_src": str(job.app), "wheels_dir": str(job.wheels),
        "configs": str(job.configs), "release": release,
    }  # fmt: skip


def run_ansible(lab: Lab, hosts: list[Sandbox], job: Job, action: str, release: str) -> float:
    run_dir = Path(tempfile.mkdtemp(dir=job.work, prefix="ansible-"))
    inventory = {
        "web": {
            "hosts": {s.name: None for s in hosts},
            "vars": {
                **_vars(lab, job, release),
                "ansible_user": "root",
                "ansible_ssh_common_args": f"-F {lab.ssh_config}",
            },
        }
    }
    (run_dir / "inventory.yml").write_text(yaml.safe_dump(inventory))
    playbook = HERE / "ansible" / ("rollback.yml" if action == "rollback" else "deploy.yml")
    env = {
        "ANSIBLE_CONFIG": str(HERE / "ansible" / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_dir / "cp"),  # a run's own masters: no reuse across runs
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
    }
    bin_dir = tool_venv("ansible")
    cmd = [str(bin_dir / "ansible-playbook"), "-i", str(run_dir / "inventory.yml"), str(playbook)]
    try:
        return _run(cmd, env)
    finally:
        for s in hosts:  # end this run's ControlPersist masters, as the run is over
            control = f"ControlPath={run_dir / 'cp'}/%C"
            subprocess.run(
                ["ssh", "-F", str(lab.ssh_config), "-o", control, "-O", "exit", s.name],
                capture_output=True, check=False,
            )  # fmt: skip


def run_pyinfra(lab: Lab, hosts: list[Sandbox], job: Job, action: str, release: str) -> float:
    run_dir = Path(tempfile.mkdtemp(dir=job.work, prefix="pyinfra-"))
    data = _vars(lab, job, release)
    entries = []
    for s in hosts:
        host_data = {
            "ssh_hostname": s.address, "ssh_port": s.ssh_port, "ssh_user": "root",
            "ssh_key": str(lab.client_key), "ssh_known_hosts_file": str(lab.known_hosts),
            "ssh_strict_host_key_checking": "yes", **data,
        }  # fmt: skip
        entries.append((s.name, host_data))
    (run_dir / "inventory.py").write_text(f"web = {entries!r}\n")
    deploy = HERE / "pyinfra" / ("rollback.py" if action == "rollback" else "deploy.py")
    bin_dir = tool_venv("pyinfra")
    return _run([str(bin_dir / "pyinfra"), "-y", str(run_dir / "inventory.py"), str(deploy)], cwd=run_dir)


def deploy(tool: str, lab: Lab, hosts: list[Sandbox], job: Job, action: str = "deploy") -> float:
    if tool == "ours":
        return run_ours(lab, hosts, job, action)
    release = job.releases[-2] if action == "rollback" else job.release
    runner = run_ansible if tool == "ansible" else run_pyinfra
    return runner(lab, hosts, job, action, release)


# ---- counting SSH traffic ---------------------------------------------------------------------------
SSHD_DEBUG = "printf 'LogLevel DEBUG1\\n' > /etc/ssh/sshd_config.d/bench.conf && systemctl reload ssh"


def sshd_counts(sandbox: Sandbox, since: float, until: float) -> tuple[int, int]:
    """(connections, commands) sshd logged between two moments (the sandbox shares the host's clock)."""
    out = sandbox.ssh(f"journalctl -q -t sshd -o short-unix --since @{int(since) - 1}").stdout
    connections = commands = 0
    for line in out.splitlines():
        stamp, _, message = line.partition(" ")
        try:
            moment = float(stamp)
        except ValueError:
            continue
        if not since <= moment <= until:
            continue
        connections += "Accepted publickey" in message
        commands += " req exec" in message or "subsystem request" in message
    return connections, commands


def measured(hosts: list[Sandbox], action) -> Sample:  # noqa: ANN001 - action() -> seconds
    since = time.time()
    seconds = action()
    until = time.time()
    time.sleep(0.2)  # let journald take the last lines
    with ThreadPoolExecutor(len(hosts)) as pool:
        counts = list(pool.map(lambda s: sshd_counts(s, since, until), hosts))
    return Sample(seconds, sum(c for c, _ in counts), sum(c for _, c in counts))


# ---- the run ----------------------------------------------------------------------------------------
def fresh(lab: Lab, sandboxes: list[Sandbox], rtt: int) -> None:
    """Reset the sandboxes to new servers, with sshd logging commands, at this RTT."""
    with ThreadPoolExecutor(len(sandboxes)) as pool:
        list(pool.map(lambda s: s.reset(), sandboxes))
    lab.save()
    for s in sandboxes:
        s.ssh(SSHD_DEBUG)
        s.set_latency(rtt)


def one_tool(
    tool: str, rtt: int, lab: Lab, sandboxes: list[Sandbox], job: Job, cases: list[str], counts: list[int],
    results: Results, log,
) -> None:  # fmt: skip
    needed = max(counts) if "fleet" in cases else 1
    fresh(lab, sandboxes[:needed], rtt)
    first = sandboxes[:1]
    job.releases = []

    def go(hosts: list[Sandbox], action: str = "deploy"):
        def action_run() -> float:
            if action == "deploy":
                job.releases.append(job.release)
            return deploy(tool, lab, hosts, job, action)

        return action_run

    def record(case: str, sample: Sample) -> None:
        results.add(case, rtt, tool, sample)
        extra = "" if sample.failed_requests is None else f", {sample.failed_requests} failed requests"
        log(f"  {tool:<8} RTT {rtt:>3}  {case:<12} {sample.seconds:6.2f} s  "
            f"{sample.connections} connections, {sample.commands} commands{extra}")  # fmt: skip

    cold = measured(first, go(first))
    if "cold" in cases:
        record("cold", cold)
    if "noop" in cases or "rollback" in cases:
        record("noop", measured(first, go(first))) if "noop" in cases else None
    if "code" in cases or "rollback" in cases:
        job.change_code()
        with Load(f"http://{first[0].address}/", clients=20, max_seconds=600) as load:
            sample = measured(first, go(first))
        sample.failed_requests = len(load.failed)
        if "code" in cases:
            record("code", sample)
    if "rollback" in cases:
        record("rollback", measured(first, go(first, "rollback")))
    if "fleet" in cases:
        go(sandboxes[:needed])()  # every host up to date (not timed)
        for n in counts:
            record(f"noop x{n}", measured(sandboxes[:n], go(sandboxes[:n])))
        for n in counts:
            job.change_code()
            record(f"code x{n}", measured(sandboxes[:n], go(sandboxes[:n])))
    if "stack" in cases and tool == "ours":
        fresh(lab, first, rtt)
        stack = stack_job(job.work)
        record("stack cold", measured(first, lambda: run_ours(lab, first, stack, "deploy")))
        stack.change_code()
        record("stack code", measured(first, lambda: run_ours(lab, first, stack, "deploy")))


def table(results: Results, tools: list[str], rtts: list[int]) -> str:
    case_names = list(dict.fromkeys(case for case, _, _ in results.samples))
    header = f"{'case':<12} {'RTT':>4}" + "".join(f" {tool:>9}" for tool in tools)
    header += "".join(f" {'ours/' + t:>13}" for t in tools if t != "ours")
    header += f" {'conns/cmds (ours)':>18} {'failed req':>10}"
    lines = [header, "-" * len(header)]
    for case in case_names:
        for rtt in rtts:
            medians = {}
            for tool in tools:
                samples = results.samples.get((case, rtt, tool))
                medians[tool] = statistics.median(s.seconds for s in samples) if samples else None
            cells = "".join(f" {m:>7.2f} s" if m is not None else f" {'-':>9}" for m in medians.values())
            for t in tools:
                if t == "ours":
                    continue
                ours, theirs = medians.get("ours"), medians[t]
                cells += f" {ours / theirs:>12.2f}x" if ours and theirs else f" {'-':>13}"
            cells += f" {counts(results.samples.get((case, rtt, 'ours'))):>18}"
            failed = {
                t: sum(s.failed_requests or 0 for s in results.samples.get((case, rtt, t), [])) for t in tools
            }
            cells += f" {'/'.join(str(failed[t]) for t in tools) if case == 'code' else '':>10}"
            lines.append(f"{case:<12} {rtt:>4}{cells}")
    return "\n".join(lines)


def counts(samples: list | None) -> str:
    """SSH connections / remote commands of a case's runs (medians), or "-" when it has none."""
    if not samples:
        return "-"
    conns = statistics.median(s.connections for s in samples)
    cmds = statistics.median(s.commands for s in samples)
    return f"{conns:g}/{cmds:g}"


def counts_table(results: Results, tools: list[str], rtts: list[int]) -> str:
    """SSH connections / remote commands per run (medians), every tool."""
    case_names = list(dict.fromkeys(case for case, _, _ in results.samples))
    lines = [f"{'case':<12} {'RTT':>4}" + "".join(f" {tool:>12}" for tool in tools)]
    lines.append("-" * len(lines[0]))
    for case in case_names:
        for rtt in rtts:
            cells = ""
            for tool in tools:
                cells += f" {counts(results.samples.get((case, rtt, tool))):>12}"
            lines.append(f"{case:<12} {rtt:>4}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rtt", type=int, nargs="+", default=[0, 50], help="SSH round-trip times in ms")
    parser.add_argument(
        "--tools", default="ours,ansible,pyinfra", help="comma-separated: ours,ansible,pyinfra"
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {','.join(CASES)}")
    parser.add_argument(
        "--hosts", type=int, nargs="+", default=[1, 4, 8], help="host counts of the fleet case"
    )
    parser.add_argument("--app", type=Path, default=fab.ROOT / "app", help="the app directory (app.src)")
    parser.add_argument("--module", default="app:app", help="its app.module")
    parser.add_argument("--smoke", action="store_true", help="one round, RTT 0, the cold case: for CI")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.smoke:
        args.rounds, args.rtt, cases = 1, [0], ["cold"]
        if "--tools" not in " ".join(argv if argv is not None else sys.argv):
            tools = ["ours"]
    bad = [t for t in tools if t not in TOOLS] + [c for c in cases if c not in CASES]
    if bad or "ours" not in tools or not 1 <= max(args.hosts) <= 8:
        parser.error(f"tools from {TOOLS} (ours among them), cases from {CASES}, hosts 1 to 8; got {bad}")
    for tool in tools:
        if tool != "ours":
            tool_venv(tool)
    needed = max(args.hosts) if "fleet" in cases else 1
    job = make_job(args.app, args.module)
    results = Results()
    lab = Lab.create(owner_pid=os.getpid())
    started = time.monotonic()
    try:
        sandboxes = lab.start(needed)
        try:
            for round_no in range(args.rounds):
                order = tools[round_no % len(tools) :] + tools[: round_no % len(tools)]
                for rtt in args.rtt:
                    print(f"round {round_no + 1}/{args.rounds}, RTT {rtt} ms", flush=True)
                    for tool in order:
                        one_tool(tool, rtt, lab, sandboxes, job, cases, args.hosts, results,
                                 lambda line: print(line, flush=True))  # fmt: skip
        except KeyboardInterrupt:
            print("interrupted: the table below has the runs that ended", flush=True)
    finally:
        lab.destroy()
        shutil.rmtree(job.work, ignore_errors=True)
    print()
    print(table(results, tools, args.rtt))
    print(
        f"(medians of {args.rounds} round(s); ours/TOOL < 1: we are faster; failed req: ours/... under load)"
    )
    print()
    print("SSH connections/remote commands per run (medians, summed over hosts; from sshd's log):")
    print(counts_table(results, tools, args.rtt))
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
