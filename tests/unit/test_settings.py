import re
from dataclasses import replace
from types import SimpleNamespace

import fabric
import pytest
from invoke.exceptions import Exit

from tasks.settings import PROJECT_ROOT, SCHEMA, SECTIONS, App, SettingError, Settings, is_empty, load, parse
from tests.unit.conftest import default_config


def with_value(section: str, key: str, value) -> dict:
    config = default_config()
    config[section][key] = value
    return config


def test_defaults_from_invoke_yaml_are_valid():
    s = parse(default_config())
    assert (s.app.name, s.app.module, s.app.port, s.app.server_name) == ("flaskdemo", "app:app", 8080, "_")
    assert s.app.workers is None and s.app.threads == 5 and s.deploy.keep_releases == 5
    assert s.app.src.name == "app" and s.app.src.is_dir()
    assert s.https.mode == "off" and s.timeouts.connect == 10


def test_invoke_yaml_holds_exactly_the_declared_keys_in_order_with_their_defaults():
    config = default_config()
    assert list(config) == list(SECTIONS)
    for section in SECTIONS:
        declared = [key for key in SCHEMA.values() if key.section == section]
        assert list(config[section]) == [key.key for key in declared], f"invoke.yaml's {section} section"
        for key in declared:
            assert config[section][key.key] == key.default, f"invoke.yaml's {key.name} is not its default"


def yaml_comments() -> dict[str, str]:
    """Each key of invoke.yaml -> its comment: the comment lines right above it, then the one after it."""
    comments, section, above = {}, None, []
    for line in (PROJECT_ROOT / "invoke.yaml").read_text().splitlines():
        if match := re.fullmatch(r"  # (.*)", line):
            above.append(match[1])
        elif match := re.fullmatch(r"  (\w+): .*?(?:\s+# (.*))?", line):
            comments[f"{section}.{match[1]}"] = " ".join([*above, *filter(None, [match[2]])])
            above = []
        else:
            section, above = line.partition(":")[0], []
    return comments


def test_each_keys_help_is_its_comment_in_invoke_yaml():
    assert yaml_comments() == {name: key.help for name, key in SCHEMA.items()}


def test_the_sections_made_without_arguments_hold_the_validated_defaults():
    assert Settings() == parse({}) == parse(default_config())
    assert Settings().app.src == PROJECT_ROOT / "app" and Settings().deploy.shared_dirs == ("instance",)


@pytest.mark.parametrize("value", [None, "", "  ", "~", "null", "NULL", "Null", "none", "None", " null "])
def test_one_notion_of_empty(value):
    assert is_empty(value)
    for section, key in [("app", "workers"), ("app", "health_path"), ("deploy", "release_command"),
                         ("deploy", "group"), ("https", "email"), ("https", "ca_bundle"), ("https", "cert"),
                         ("https", "key")]:  # fmt: skip
        assert getattr(getattr(parse(with_value(section, key, value)), section), key) is None, key


@pytest.mark.parametrize("value", [0, False, [], {}, "0", "nul", "auto", "-", "None!"])
def test_what_is_not_empty(value):
    assert not is_empty(value)


def test_auto_is_app_workers_word_for_its_default_and_no_other_keys():
    assert parse(with_value("app", "workers", " Auto ")).app.workers is None
    with pytest.raises(SettingError, match=r"^app\.health_path: must be a URL path"):
        parse(with_value("app", "health_path", "auto"))


def test_an_empty_string_is_no_value_for_a_key_that_must_have_one():
    with pytest.raises(SettingError, match=r"^app\.port: must be an integer 1024-65535, got ''"):
        parse(with_value("app", "port", ""))
    with pytest.raises(SettingError, match=r"^app\.src: must be the path of the Flask app's directory"):
        parse(with_value("app", "src", ""))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("app", "port", "abc", "app.port: must be an integer 1024-65535, got 'abc' (invoke.yaml or -f FILE)"),
        ("app", "port", 80, "app.port: must be an integer 1024-65535, got 80"),
        ("app", "port", True, "app.port: must be an integer"),
        ("app", "name", "Flask Demo", "app.name: must be a lowercase name"),
        ("app", "name", "x; rm -rf /", "app.name: must be a lowercase name"),
        ("app", "module", "app", "app.module: must be a WSGI entry point"),
        ("app", "src", "no/such/dir", "app.src: must be an existing directory"),
        ("app", "src", "tasks", "app.src: must hold a requirements.txt"),
        ("app", "server_name", "a;b", "app.server_name: must be host names separated by spaces"),
        # `x\` rendered `server_name x\;`, which swallowed nginx's next directive
        ("app", "server_name", "x\\", "app.server_name: must be host names"),
        ("app", "server_name", "$(id)", "app.server_name: must be host names"),
        ("app", "server_name", "`id`.example.org", "app.server_name: must be host names"),
        ("app", "server_name", "ex\u00e4mple.org", "app.server_name: must be host names"),
        ("app", "server_name", "a  b", "app.server_name: must be host names"),
        ("app", "name", "root", "app.name: 'root' is a name the system uses"),
        ("app", "name", "www-data", "app.name: 'www-data' is a name the system uses"),
        ("app", "name", "sshd", "app.name: 'sshd' is a name the system uses"),
        ("app", "name", "systemd-timesync", "app.name: 'systemd-timesync' is a name the system uses"),
        ("app", "port", "\u00b2", "app.port: must be an integer 1024-65535"),
        ("deploy", "shared_dirs", ["instance", "instance/uploads"], "deploy.shared_dirs: 'instance' holds"),
        ("deploy", "release_timeout", 0, "deploy.release_timeout: must be an integer 1-86400"),
        ("timeouts", "connect", "soon", "timeouts.connect: must be an integer 1-3600"),
        ("app", "workers", 0, "app.workers: must be an integer 1-256"),
        ("app", "health_path", "health", "app.health_path: must be a URL path"),
        ("deploy", "keep_releases", 1, "deploy.keep_releases: must be an integer 2-100"),
        ("app", "env", ["SECRET"], "app.env: must be a mapping of environment variable names to strings"),
        ("app", "env", {"1X": "a"}, "app.env: '1X' is no environment variable name"),
        ("app", "env", {"PORT": 80}, "app.env: the value of PORT must be a string (quote it in YAML)"),
        ("deploy", "shared_dirs", "instance", "deploy.shared_dirs: must be a list of directories"),
        ("deploy", "shared_dirs", ["../etc"], "deploy.shared_dirs: '../etc' is no plain relative directory"),
        ("deploy", "shared_dirs", ["/var/data"], "deploy.shared_dirs: '/var/data' is no plain relative"),
        ("deploy", "shared_dirs", [".deploy"], "deploy.shared_dirs: '.deploy' is no plain relative"),
        ("deploy", "release_command", "a\nb", "deploy.release_command: must be one shell command line"),
        ("deploy", "release_command", ["flask", "db"], "deploy.release_command: must be one shell command"),
        ("deploy", "parallel", 0, "deploy.parallel: must be an integer 1-1000, got 0"),
        ("deploy", "hosts", ["web 1"], "deploy.hosts: 'web 1' is no host like web1"),
        ("deploy", "groups", {"web": []}, "deploy.groups: group 'web' must be a non-empty list of hosts"),
        ("deploy", "group", "web", "deploy.group: no group 'web' in deploy.groups (known: none)"),
        # ASCII only: a Unicode letter or digit passed `\w` and `\d`, then broke what reads the value
        ("app", "health_path", "/\u5065\u5eb7", "app.health_path: must be a URL path starting with '/' (A"),
        ("deploy", "shared_dirs", ["d\u00e4ta"], "deploy.shared_dirs: 'd\u00e4ta' is no plain relative"),
        ("app", "static", {"/st\u00e4tic/": "static"}, "app.static: '/st\u00e4tic/' is no URL prefix"),
        ("app", "static", {"/static/": "st\u00e4tic"}, "app.static: 'st\u00e4tic' is no plain relative"),
        ("app", "module", "app\u00e4:app", "app.module: must be a WSGI entry point"),
        ("app", "gunicorn", "\uff12\uff17.0.1", "app.gunicorn: must be a gunicorn version"),
        ("deploy", "groups", {"w\u00e9b": ["web1"]}, "deploy.groups: 'w\u00e9b' is no group name"),
        ("deploy", "hosts", ["web1:\uff12\uff12"], "deploy.hosts: 'web1:\uff12\uff12' is no host"),
        ("https", "directory", "https://ca.example.org/d\u00efr", "https.directory: must be an https:// URL"),
        # a directory that is no string was a traceback
        ("app", "static", {"/static/": 1}, "app.static: 1 is no plain relative directory of the app"),
        ("app", "static", {"/static/": None}, "app.static: None is no plain relative directory"),
        ("deploy", "release_command", "flask\0db upgrade", "deploy.release_command: holds the control"
         " character U+0000: write the command without it"),
        ("deploy", "release_command", "echo \x1b[2Jdone", "deploy.release_command: holds the control"),
        ("deploy", "release_command", "a\rb", "deploy.release_command: holds the control character U+000D"),
        ("deploy", "release_command", "a\x85b", "deploy.release_command: holds the control character U+0085"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_key_and_the_fix(section, key, value, message):
    with pytest.raises(SettingError) as error:
        parse(with_value(section, key, value))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_server_names_nginx_takes_as_names_are_accepted():
    for names in ("_", "example.org www.example.org", "*.example.org", "example.*", "localhost", "10.0.0.1"):
        assert parse(with_value("app", "server_name", names)).app.server_name == names


def test_a_section_that_is_no_mapping_is_one_line_too():
    with pytest.raises(
        SettingError, match=r"^app: must be a section of settings \(key: value lines\), got 'oops'"
    ):
        parse({"app": "oops"})


def test_the_ssh_login_user_is_no_app_name():
    c = SimpleNamespace(config=with_value("app", "name", "deploy"), user="deploy")
    with pytest.raises(Exit) as error:
        load(c)
    assert error.value.code == 2 and error.value.message.startswith(
        "app.name: 'deploy' is the SSH login user"
    )


def test_string_numbers_from_env_vars_are_accepted():
    assert parse(with_value("app", "port", "8081")).app.port == 8081
    assert parse(with_value("app", "workers", "auto")).app.workers is None


def test_a_release_command_may_hold_a_tab_and_end_with_a_newline():
    assert parse(with_value("deploy", "release_command", "flask\tdb upgrade\n")).deploy.release_command == (
        "flask\tdb upgrade"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "htps",
            "htps: unknown section (did you mean https? the kit's: app, deploy, https, services, timeouts)",
        ),
        ("ap", "ap: unknown section (did you mean app? the kit's:"),
        ("conect_kwargs", "conect_kwargs: unknown section (did you mean connect_kwargs? the kit's:"),
        ("hosts", "hosts: unknown section (did you mean deploy.hosts? the kit's:"),  # a key of a section
        (
            "zzz",
            "zzz: unknown section (the kit's: app, deploy, https, services, timeouts)"
            " (invoke.yaml or -f FILE)",
        ),
        (1, "1: unknown section (the kit's:"),
    ],
)
def test_an_unknown_top_level_section_is_refused_naming_the_closest_known_one(name, message):
    # A misspelt section was passed over without a word: `htps: {mode: acme}` deployed an HTTP-only site.
    config = default_config() | {name: {"mode": "acme"}}
    with pytest.raises(SettingError) as error:
        parse(config)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_the_top_level_keys_of_fabric_and_invoke_are_no_unknown_sections():
    config = fabric.Config()  # every key Fabric and Invoke read, as a `fab` run's config holds them
    config.load_collection(default_config())
    config.load_overrides({"connect_kwargs": {"key_filename": ["/k"]}, "run": {"echo": True}})
    assert parse(config) == parse(default_config())
    assert {"run", "sudo", "tasks", "timeouts", "connect_kwargs", "user", "port"} <= set(config)


def test_unknown_keys_are_named_and_missing_ones_take_their_default():
    with pytest.raises(SettingError, match=r"^app\.prot: unknown setting"):
        parse(with_value("app", "prot", 1))
    assert parse({"app": {"name": "other"}}) == Settings(app=replace(App(), name="other"))
    assert parse({}).app.module == "app:app" and parse({}).app.port == 8080


def test_load_turns_a_bad_value_into_a_clean_exit_code_2():
    c = SimpleNamespace(config=with_value("app", "port", "abc"))
    with pytest.raises(Exit) as error:
        load(c)
    assert error.value.code == 2
    assert error.value.message.startswith("app.port:")


def test_the_new_release_settings_and_their_defaults():
    s = parse(default_config())
    assert s.app.env == {} and s.deploy.shared_dirs == ("instance",) and s.deploy.release_command is None
    s = parse(
        with_value("deploy", "shared_dirs", ["instance", "static/uploads", "instance"])
        | {"app": {**default_config()["app"], "env": {"SECRET_KEY": "x"}}}
    )
    assert s.deploy.shared_dirs == ("instance", "static/uploads") and s.app.env == {"SECRET_KEY": "x"}
    assert parse(with_value("deploy", "release_command", "  flask db upgrade ")).deploy.release_command == (
        "flask db upgrade"
    )


def test_app_env_values_are_never_printed():
    config = with_value("app", "env", {"SECRET_KEY": "hunter2", "bad name": "hunter2"})
    with pytest.raises(SettingError) as error:
        parse(config)
    assert "hunter2" not in str(error.value)
    config["app"]["env"] = {"SECRET_KEY": "hunter2"}
    assert "hunter2" not in repr(parse(config))
