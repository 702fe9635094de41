"""What the steps need to know about a server, in one run: printed as one line of JSON.

    probe.py QUESTIONS [HEALTH_SOURCE URL HOST RULE]

QUESTIONS (built by tasks/probe.py: marshal's data, compressed, in base64) holds the platform
table's entries, the app's paths and the sources of the steps' parts (runtime/probe_*.py). The probe
picks the first entry whose `match` fits /etc/os-release and answers that entry's questions: the facts
every run shares here (the platform, the app's user, the paths, the units, the lock), each step's own
by its part, run in this interpreter with what the entry asks of it. Their answers are one flat JSON
object; the control machine parses it into tasks.facts.Facts. Read-only: it changes nothing on the
server.

Every deploy and `status` starts it, on every host at once: it imports only modules built into
python3 or written in C. json, re, socket, hashlib and shlex, in their Python halves, would take as
long to import as the rest of the probe takes to run (the Python start included). So the questions
come in marshal's format (data only: dicts, lists, strings, numbers, booleans, None), JSON goes out
through json's C half, release records travel as the text they are (the control machine parses them),
and re, shlex and json are imported where a rare case needs them.

It runs as root, with no watchdog above it. Of the paths it describes it reads the content of the kit's
own files only (`hashed`: where only root writes; elsewhere the app's user may leave a FIFO or a file of
a terabyte), opened through no link and without waiting on a FIFO. And it ends within the questions'
time_limit, whatever it meets: a probe out of time exits 1 with one line on stderr, saying where it
stopped.
"""

import _signal
import binascii
import grp
import marshal
import os
import pwd
import stat
import sys
import zlib

try:
    from _json import encode_basestring_ascii as json_string  # the json module's C half
except ImportError:  # a python3 built without it
    from json.encoder import encode_basestring_ascii as json_string
try:
    from _sha2 import sha256  # Python 3.12 and later: hashlib's own, without loading OpenSSL
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        from hashlib import sha256


def os_release(path):
    """The fields of /etc/os-release: ID, VERSION_ID, ID_LIKE, PRETTY_NAME, ..."""
    fields = {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return fields
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            try:
                fields[key] = shell_value(value)
            except ValueError:  # an unbalanced quote: this line only
                continue
    return fields


SHELL_SPECIAL = frozenset("\"'\\$`")


def shell_value(value):
    """An os-release value as the shell reads it (words joined by a space): a quoted value without
    escapes, or a bare word, read here; anything else by shlex."""
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
    if quoted and SHELL_SPECIAL.isdisjoint(value[1:-1]):
        return value[1:-1]
    if not quoted and value.isprintable() and SHELL_SPECIAL.union(" ;&|<>()").isdisjoint(value):
        return value
    import shlex  # here: it imports re, and os-release values are seldom more than quoted words

    return " ".join(shlex.split(value))


def matches(match, release):
    for key, wanted in match.items():
        if key == "ID_LIKE":
            if wanted not in [release.get("ID", "")] + release.get("ID_LIKE", "").split():
                return False
        elif release.get(key) != wanted:
            return False
    return True


def name_of(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return "UNKNOWN"


def describe(path, hashed):
    """What is at path: absent, a link (its target), a file (with `hashed`, its sha256), a directory
    (owner, group, mode) or something else."""
    try:
        info = os.lstat(path)
    except OSError:
        return {"kind": "absent"}
    if stat.S_ISLNK(info.st_mode):
        return {"kind": "link", "target": os.readlink(path)}
    if stat.S_ISREG(info.st_mode):
        if not hashed:
            return {"kind": "file"}
        digest = file_sha256(path)
        return {"kind": "file", "sha256": digest} if digest else {"kind": "other"}
    if stat.S_ISDIR(info.st_mode):
        return {
            "kind": "dir",
            "owner": name_of(pwd.getpwuid, info.st_uid),
            "group": name_of(grp.getgrgid, info.st_gid),
            "mode": f"{stat.S_IMODE(info.st_mode):o}",
        }
    return {"kind": "other"}


def file_sha256(path):
    """The sha256 of the regular file at path; None when something else is there by the time it is
    opened (a link or a FIFO put in its place): opened through no link, without waiting for a FIFO's
    writer, and what was opened checked before it is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = sha256()
        while True:
            block = os.read(fd, 1 << 16)
            if not block:
                return digest.hexdigest()
            digest.update(block)
    finally:
        os.close(fd)


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


def entries(directory):
    """Names in a directory, hidden ones (a .partial release being built) left out."""
    try:
        return sorted(name for name in os.listdir(directory) if not name.startswith("."))
    except OSError:
        return []


def output(argv):
    """What the command argv prints (its errors dropped; "" when it cannot start). os.posix_spawn rather
    than the subprocess module, which costs a probe more to import than its commands cost to run."""
    read_end, write_end = os.pipe()
    try:
        with open(os.devnull, "wb") as devnull:
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_DUP2, devnull.fileno(), 2),
            ])  # fmt: skip
    except OSError:
        os.close(read_end)
        return ""
    finally:
        os.close(write_end)
    with open(read_end, encoding="utf-8", errors="replace") as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return text


def units(names):
    """Unit -> {"active": ActiveState, "enabled": UnitFileState}, from one `systemctl show`."""
    found = {name: {"active": "", "enabled": ""} for name in names}
    shown = output(
        ["systemctl", "show", "--property=Id,ActiveState,UnitFileState"]
        + [name if "." in name else name + ".service" for name in names]
    )
    for block in shown.strip().split("\n\n"):
        fields = dict(line.partition("=")[::2] for line in block.splitlines())
        name = fields.get("Id", "")
        name = name[: -len(".service")] if name.endswith(".service") else name
        if name in found:
            found[name] = {
                "active": fields.get("ActiveState", ""),
                "enabled": fields.get("UnitFileState", ""),
            }
    return found


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (which may hold spaces): state, parent, ...
    (field 22, the start time, is [19]); None when there is no such process."""
    _, sep, rest = read_text(f"/proc/{pid}/stat").rpartition(") ")
    return rest.split() if sep else None


def disk_free(path):
    """Bytes free for the app's files under `path` (as `df` shows them available); on a fresh server,
    under the nearest directory above it that exists."""
    while True:
        try:
            info = os.statvfs(path)
        except OSError:
            if os.path.dirname(path) == path:
                return None
            path = os.path.dirname(path)
            continue
        return info.f_bavail * info.f_frsize


def is_connection(conn, sshd_names):
    """Whether a lock's connection record ("PID START") is an sshd process that still runs: the same test
    as runtime/lock.sh's is_connection (a reused PID has another start time)."""
    if len(conn) != 2 or not conn[0].isdigit():
        return False
    fields = proc_stat(conn[0])
    comm = read_text(f"/proc/{conn[0]}/comm").strip()
    return bool(fields) and len(fields) > 19 and fields[19] == conn[1] and comm in sshd_names


def flocked(path):
    """Whether a process holds a flock on `path`, as /proc/locks lists it: looked at, never taken."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in read_text("/proc/locks").splitlines():
        words = line.split()
        if "FLOCK" in words and "->" not in words and where in words:  # "->": a waiter, not a holder
            return True
    return False


def lock_holder(lock, app):
    """Who holds the app's deploy lock and since when, from runtime/lock.sh's records; None when it is
    free. A run that ended leaves its records: they count while the holder's connection lives, or while
    a run whose connection is gone still applies (it holds APP.run), as lock.sh counts them."""
    base = os.path.join(lock["root"], app)
    owner = read_text(base + ".owner").strip()
    if not owner:
        return None
    alive = is_connection(read_text(base + ".conn").split(), lock["sshd_process_names"])
    if not alive and not flocked(base + ".run"):
        return None
    holder, sep, since = owner.rpartition(" since ")
    return {"holder": holder, "since": since} if sep else {"holder": owner, "since": ""}


def app_user(name):
    """The app's user as the account database has it, or None."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return None
    return {"home": user.pw_dir, "shell": user.pw_shell, "comment": user.pw_gecos}


def glibc():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    except (ValueError, OSError, IndexError, AttributeError):
        return ""


def detail(platform, app, salt):
    """For a check run: the config files' text (None when absent), the live release's list of files (path
    -> sha256, None when it keeps none) and its app.env as salted digests: what changes, never a value."""
    import json  # here: a check run reads JSON files on the server; other runs only write JSON

    live = os.path.join(platform["current"], app["meta"])
    try:
        files = json.loads(read_text(os.path.join(live, app["files"])))
    except ValueError:
        files = None
    try:
        env = json.loads(read_text(os.path.join(live, "env.json")))
    except ValueError:
        env = {}
    digests = {key: sha256("\0".join((salt, key, value)).encode()).hexdigest() for key, value in env.items()}
    return {
        "configs": {path: read_text(path) if os.path.isfile(path) else None for path in platform["configs"]},
        "release_files": files,
        "env_digests": digests if os.path.isfile(os.path.join(live, "env.json")) else None,
        "env_salt": salt,
    }


def probe(questions):
    release = os_release(questions["os_release"])
    app = questions["app"]
    platform = next((p for p in questions["platforms"] if matches(p["match"], release)), None)
    facts = {
        "platform": platform["id"] if platform else None,
        "system": release.get("PRETTY_NAME", ""),
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
        "machine": os.uname().machine,
        "glibc": glibc(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    if not platform:
        return facts
    hashed = set(platform["hashed"])
    facts.update({
        "app_user": app_user(app["name"]),
        "paths": {path: describe(path, path in hashed) for path in platform["paths"]},
        "units": units(platform["units"]),
        "disk_free": disk_free(platform["base_dir"]),
        "lock": lock_holder(questions["lock"], app["name"]),
    })  # fmt: skip
    facts.update(parts(questions["parts"], platform["asks"]))
    if "salt" in questions:
        facts.update(detail(platform, app, questions["salt"]))
    return facts


def parts(sources, asks):
    """The steps' parts (runtime/probe_*.py, each a step's facts), from their sources, run in this
    interpreter: each one's `gather(asked)`, with what the platform's entry asks of it. A part imports
    what it shares with the rest of the probe from module `probe`: this one."""
    sys.modules.setdefault("probe", sys.modules[__name__])
    facts = {}
    for name, asked in asks.items():
        module = {"__name__": name}
        exec(compile(sources[name], name + ".py", "exec"), module)
        facts.update(module["gather"](asked))
    return facts


def to_json(value):
    """value (facts: dicts, lists, strings, numbers, booleans, None) as json.dumps writes it."""
    if isinstance(value, str):
        return json_string(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json_string(str(k))}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_json(item) for item in value) + "]"
    raise TypeError(f"no JSON for {type(value).__name__}")


def health(source, url, host, rule):
    """The health request (runtime/health.py, from its source), one try, run in this interpreter rather
    than a python3 of its own: its report, for the facts."""
    module = {"__name__": "health"}
    exec(compile(source, "health.py", "exec"), module)
    return module["report"](url, host, rule)


class OutOfTime(BaseException):
    """The probe's time is up. A BaseException: no `except` on the way may take it for a failed read."""


def out_of_time(signum, frame):
    raise OutOfTime(frame.f_code.co_name if frame else "?")


if __name__ == "__main__":
    # QUESTIONS [HEALTH_SOURCE URL HOST RULE]: with health.py's source, the health request comes first,
    # and its report is part of the facts.
    asked = marshal.loads(zlib.decompress(binascii.a2b_base64(sys.argv[1])))
    # Too old a python3 for the kit: its version, nothing else (the control machine refuses the server in
    # one line). This file compiles on Python 3.7 (ruff's target for it) and runs up to here; after it, 3.11.
    if sys.version_info < tuple(asked["python_min"]):
        print('{"python": "' + "{}.{}.{}".format(*sys.version_info[:3]) + '"}')
        sys.exit(0)
    # SIGALRM ends any wait, a blocking open or read too: the handler raises where the probe is.
    _signal.signal(_signal.SIGALRM, out_of_time)
    _signal.alarm(asked["time_limit"])
    try:
        answered = health(*sys.argv[2:6]) if len(sys.argv) > 2 else {}
        print(to_json({**answered, **probe(asked)}))
    except OutOfTime as stopped:
        sys.exit(f"it did not end within {asked['time_limit']} s: stopped in {stopped}")
