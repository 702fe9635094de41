import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from tasks import configs
from tests.unit.conftest import PLATFORM, paths_of


def test_gunicorn_binds_loopback_with_workers_from_the_servers_cpus(settings):
    text = configs.gunicorn_conf(settings, paths_of(settings), cpu_count=4)
    assert 'bind = "127.0.0.1:8080"' in text
    assert "workers = 9\n" in text
    assert 'worker_class = "gthread"' in text and "threads = 5\n" in text
    assert not re.search(r"^pidfile\s*=", text, re.MULTILINE)  # no pidfile: one the app could forge
    assert "control_socket_disable = True\n" in text  # no thread in the master that forks the workers
    assert 'chdir = "/srv/flaskdemo/current"' in text
    compile(text, "gunicorn.conf.py", "exec")  # valid Python


def python_with(config: str, program: str) -> str:
    """What `program` prints, run by a Python of its own with the rendered gunicorn config on its stdin."""
    done = subprocess.run([sys.executable, "-I", "-c", program], input=config, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def master_runs(text: str, *path: Path) -> dict:
    """What gunicorn's master holds after running the config, as it does at start and on each HUP (twice
    here), with `path` where its venv's packages would be: the modules it imported, and how many objects
    it froze for the garbage collector."""
    run = (
        "import gc, json, sys\n"
        f"sys.path[:0] = {[str(p) for p in path]!r}\n"
        "source = sys.stdin.read()\n"
        "for _ in range(2):\n"
        "    exec(compile(source, 'gunicorn.conf.py', 'exec'), {})\n"
        "print(json.dumps({'imported': [m for m in ('flask', 'app') if m in sys.modules],"
        " 'frozen': gc.get_freeze_count()}))\n"
    )
    return json.loads(python_with(text, run))


def test_gunicorn_s_master_imports_flask_but_never_the_app_and_freezes_before_it_forks(settings, tmp_path):
    # Workers forked with Flask loaded import only the app; the app itself must stay out of the master,
    # or a reload (HUP) would serve the old release.
    (tmp_path / "flask").mkdir()
    (tmp_path / "flask" / "__init__.py").write_text("")
    (tmp_path / "app.py").write_text("raise SystemExit('the master imported the app')\n")
    text = configs.gunicorn_conf(settings, paths_of(settings), cpu_count=2)
    held = master_runs(text, tmp_path)
    assert held["imported"] == ["flask"]
    assert held["frozen"] > 0
    # An app on no Flask at all: the config still loads.
    assert master_runs(text, tmp_path / "elsewhere")["imported"] == []


def test_explicit_workers_win(settings):
    assert "workers = 3\n" in configs.gunicorn_conf(
        replace(settings, app=replace(settings.app, workers=3)), paths_of(settings), cpu_count=16
    )


def test_nginx_site_proxies_to_loopback_with_forwarding_headers(settings):
    text = configs.nginx_site(settings, paths_of(settings), PLATFORM)
    assert "proxy_pass http://127.0.0.1:8080;" in text
    for header in ("Host $host", "X-Real-IP $remote_addr", "X-Forwarded-For $proxy_add_x_forwarded_for",
                   "X-Forwarded-Proto $scheme"):  # fmt: skip
        assert f"proxy_set_header {header};" in text
    assert "server_tokens off;" in text
    assert re.search(r"listen 80 default_server;", text)


def test_a_named_site_is_not_the_default_server(settings):
    text = configs.nginx_site(
        replace(settings, app=replace(settings.app, server_name="example.org www.example.org")),
        paths_of(settings),
        PLATFORM,
    )
    assert "default_server" not in text
    assert "server_name example.org www.example.org;" in text


def test_supervisor_program(settings):
    text = configs.supervisor_program(settings, paths_of(settings))
    assert "[program:flaskdemo]" in text
    assert (
        "command=/srv/flaskdemo/current/.venv/bin/gunicorn --config /srv/flaskdemo/gunicorn.conf.py app:app"
        in text
    )
    lines = text.splitlines()
    for line in ("user=flaskdemo", "autostart=true", "autorestart=true", "stopasgroup=true",
                 "killasgroup=true", "directory=/srv/flaskdemo", "stdout_logfile_maxbytes=10MB",
                 "stderr_logfile=/var/log/flaskdemo/error.log"):  # fmt: skip
        assert line in lines


def test_nginx_logs_go_where_the_platform_keeps_them(settings):
    text = configs.nginx_site(settings, paths_of(settings), PLATFORM)
    assert "access_log /var/log/nginx/flaskdemo.access.log;" in text
    assert "error_log /var/log/nginx/flaskdemo.error.log;" in text


def test_tmpfiles_recreates_the_runtime_dir_at_boot(settings):
    assert (
        configs.tmpfiles(settings, paths_of(settings)).splitlines()[-1]
        == "d /run/flaskdemo 0755 flaskdemo flaskdemo -"
    )


def test_hosts_rendering_at_once_compile_each_template_once(settings, monkeypatch):
    compiled, compile_source = [], configs._env.compile

    def slow_compile(source, name=None, *args, **kwargs):  # a wide window for every thread to miss the cache
        compiled.append(name)
        time.sleep(0.05)
        return compile_source(source, name, *args, **kwargs)

    monkeypatch.setattr(configs._env, "compile", slow_compile)
    configs._env.cache.clear()
    start = threading.Barrier(8)

    def render(_: int) -> str:
        start.wait()
        return configs.gunicorn_conf(settings, paths_of(settings), cpu_count=2)

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(render, range(8)))
    assert compiled == ["gunicorn.conf.py.j2"] and len(set(texts)) == 1


def test_a_worker_leaves_without_teardown_but_with_its_status_threads_atexit_and_output(settings, tmp_path):
    # gunicorn calls worker_exit while the worker's SystemExit unwinds (arbiter.spawn_worker's finally):
    # here a forked child does the same, with a thread still running, an atexit handler and unflushed
    # output. Its exit status must be the one it raised (3: a boot error, on which the master halts).
    text = configs.gunicorn_conf(settings, paths_of(settings), cpu_count=2)
    log = tmp_path / "log"
    run = (
        "import atexit, os, sys, threading, time\n"
        "hooks = {}\n"
        "exec(compile(sys.stdin.read(), 'gunicorn.conf.py', 'exec'), hooks)\n"
        "def worker(code):\n"
        "    pid = os.fork()\n"
        "    if pid:\n"
        "        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
        f"    note = lambda text: open({str(log)!r}, 'a').write(text + ' ')\n"
        "    threading.Thread(target=lambda: (time.sleep(0.2), note('thread'))).start()\n"
        "    atexit.register(note, 'atexit')\n"
        "    print('output', code, end=';')\n"
        "    try:\n"
        "        sys.exit(code)\n"
        "    finally:\n"
        "        hooks['worker_exit'](None, None)\n"
        "        note('teardown skipped')  # never: the hook does not return\n"
        "sys.stdout.flush()\n"
        "print(*(worker(code) for code in (0, 3, None)), end=';')\n"
    )
    assert python_with(text, run) == "output 0;output 3;output None;0 3 0;"
    assert log.read_text() == "thread atexit " * 3
