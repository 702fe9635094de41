"""HTTPS: the settings and how they go together, the site nginx gets, what provision and enable_site do
for it, and the one line a certbot failure shows (the certificate step's plans: steps/test_certificate.py)."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks import configs, https, status
from tasks.platform import DEBIAN_13
from tasks.settings import SettingError, parse
from tasks.steps import nginx, provision
from tasks.steps.certificate import Certificate
from tests.unit.conftest import PLATFORM, converged_facts, default_config, paths_of, plan_one
from tests.unit.serverside import run_functions

PEBBLE = "https://198.18.1.1:14000/dir"


def with_https(**values) -> dict:
    config = default_config()
    config["https"] = {**config["https"], **values}
    return config


def acme(settings, **keys):
    """settings with https.mode acme, from Pebble for app.test, and these other keys of the https section."""
    keys = {"domains": ("app.test",), **keys}
    return replace(
        settings,
        https=replace(settings.https, mode="acme", email="ops@example.org", directory=PEBBLE, **keys),
    )


def key_and_cert(directory: Path, *names: str, key=None) -> tuple[Path, Path]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "site.crt", directory / "site.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


# ---- settings ---------------------------------------------------------------------------------------


def test_https_is_off_by_default_and_yamls_bare_off_reads_as_off():
    assert parse(default_config()).https.mode == "off"
    assert parse(with_https(mode=False)).https.mode == "off"  # `mode: off` unquoted is YAML's false


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "on"}, "https.mode: must be one of off, acme, files"),
        ({"mode": "acme", "email": "a@b.org"}, "https.domains: list the site's names"),
        ({"mode": "acme", "domains": ["example.org"]}, "https.email: the ACME account's email address"),
        ({"mode": "acme", "domains": ["*.example.org"], "email": "a@b.org"}, "is no domain name"),
        ({"mode": "acme", "domains": ["localhost"], "email": "a@b.org"}, "is no domain name"),
        ({"domains": ["example.org;evil"]}, "is no domain name"),
        ({"email": "not an email"}, "https.email: must be an email address"),
        ({"directory": "http://acme.example.org/dir"}, "https.directory: must be an https:// URL"),
        ({"directory": "https://x.org/dir\nserver { }"}, "https.directory: must be an https:// URL"),
        ({"mode": "files", "domains": ["example.org"]}, "https.cert: give the path"),
        ({"cert": "/nonexistent/cert.pem"}, "https.cert: must be an existing file"),
        ({"hsts": "yes"}, "https.hsts: must be true or false"),
    ],
)  # fmt: skip
def test_bad_https_settings_are_one_line_naming_the_key(values, message):
    with pytest.raises(SettingError) as raised:
        parse(with_https(**values))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_files_mode_checks_the_certificate_and_key_before_anything_connects(tmp_path):
    cert, key = key_and_cert(tmp_path, "example.org", "www.example.org")
    good = parse(with_https(mode="files", domains=["example.org"], cert=str(cert), key=str(key)))
    assert (good.https.cert, good.https.key) == (cert, key)
    assert str(key) not in repr(good)  # the key's path is not even shown

    with pytest.raises(SettingError, match=r"https.cert: the certificate is for example.org www.example.org, "
                                           r"not for other.org"):  # fmt: skip
        parse(with_https(mode="files", domains=["other.org"], cert=str(cert), key=str(key)))
    other = tmp_path / "other"
    other.mkdir()
    _, stranger = key_and_cert(other, "example.org")
    with pytest.raises(SettingError, match="https.key: .* is not the key of the certificate"):
        parse(with_https(mode="files", domains=["example.org"], cert=str(cert), key=str(stranger)))
    with pytest.raises(SettingError, match="https.cert: .* is no PEM certificate"):
        parse(with_https(mode="files", domains=["example.org"], cert=str(key), key=str(key)))


def test_a_wildcard_certificate_covers_one_label_only():
    assert https.covers("*.example.org", "www.example.org")
    assert not https.covers("*.example.org", "a.b.example.org")
    assert not https.covers("*.example.org", "example.org")


# ---- the site -------------------------------------------------------------------------------------------


def test_off_renders_port_80_only(settings):
    site = configs.nginx_site(settings, paths_of(settings), PLATFORM)
    assert "443" not in site and "return 301" not in site and "acme-challenge" not in site


def test_with_a_certificate_port_80_redirects_but_the_challenge_and_the_server_itself(settings):
    s = acme(settings, hsts=True)
    paths = paths_of(s)
    site = configs.nginx_site(s, paths, PLATFORM, https.tls(s, paths))
    http, tls = site.split("listen 443", 1)
    assert "location ^~ /.well-known/acme-challenge/ {\n        root /srv/flaskdemo/acme;" in http
    assert "geo $flaskdeploy_flaskdemo_remote {\n    default 1;\n    127.0.0.0/8 0;\n    ::1 0;\n}" in http
    assert "return 301 https://$host$request_uri;" in http and "return 301" not in tls
    assert "ssl_certificate /etc/letsencrypt/live/flaskdemo/fullchain.pem;" in tls
    assert "ssl_certificate_key /etc/letsencrypt/live/flaskdemo/privkey.pem;" in tls
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in tls and "server_name app.test;" in tls
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in tls
    assert "ssl http2 default_server;" in tls  # nginx 1.22 (Debian 12)
    assert "http2 on;" in configs.nginx_site(s, paths, DEBIAN_13, https.tls(s, paths))  # nginx 1.26
    assert "Strict-Transport-Security" not in configs.nginx_site(acme(settings), paths, PLATFORM)


def test_a_named_site_answers_the_challenge_for_its_domains_on_port_80(settings):
    s = acme(
        replace(settings, app=replace(settings.app, server_name="example.org")),
        domains=("example.org", "www.example.org"),
    )
    site = configs.nginx_site(s, paths_of(s), PLATFORM, None)  # no certificate yet: port 80 only
    assert "server_name example.org www.example.org;" in site and "443" not in site
    assert "acme-challenge" in site and "return 301" not in site


def test_the_release_keeps_the_https_site_while_the_server_waits_for_its_certificate(settings):
    s = acme(settings)
    paths = paths_of(s)
    assert https.tls(s, paths, converged_facts(settings)) is None  # no lineage yet: port 80 only
    assert https.tls(s, paths) == https.Tls(paths.certbot_fullchain, paths.certbot_privkey)


# ---- provision and enable_site --------------------------------------------------------------------------


def test_acme_installs_certbot_and_makes_the_webroot(settings):
    s = acme(settings)
    step = plan_one(s, converged_facts(settings), provision.STEP)
    assert "start_packages 0 certbot" in step.commands
    assert 'ensure_dir "$ACME_WEBROOT" root root 755' in step.commands


def test_files_mode_sends_the_certificate_and_key_with_the_site_and_never_shows_the_key(settings, tmp_path):
    cert, key = key_and_cert(tmp_path, "app.test")
    s = replace(
        settings, https=replace(settings.https, mode="files", domains=("app.test",), cert=cert, key=key)
    )
    step = plan_one(s, converged_facts(settings), nginx.ENABLE_SITE)
    assert step.commands[0] == "install_tls_files files/tls.crt files/tls.key"
    assert step.files["files/tls.key"] == key
    assert "ssl_certificate_key /etc/ssl/flaskdeploy/flaskdemo.key;" in step.writes[paths_of(s).nginx_site]
    assert key.read_text() not in "".join(step.why) + "".join(step.writes.values())


# ---- certbot's reason, in one line ----------------------------------------------------------------------

FAILED_CHALLENGE = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for elsewhere.test

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported \
these problems:
  Domain: elsewhere.test
  Type:   connection
  Detail: 198.18.1.250: Fetching http://elsewhere.test/.well-known/acme-challenge/x: no route to host

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.
Some challenges have failed.
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile for details.
"""
UNREACHABLE = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log
An unexpected error occurred:
ValueError: Requesting 198.18.1.1/dir: Connection refused
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile for details.
"""


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (FAILED_CHALLENGE, "elsewhere.test: 198.18.1.250: Fetching http://elsewhere.test/.well-known/"
                           "acme-challenge/x: no route to host"),
        (UNREACHABLE, "ValueError: Requesting 198.18.1.1/dir: Connection refused"),
    ],
)  # fmt: skip
def test_certbots_reason_is_the_cas_detail_or_the_error(output, reason):
    done = run_functions({"OUT": output}, ['certbot_reason "$OUT"'], includes=("apply.sh", "https.sh"))
    assert done.stdout.strip() == reason


def test_status_shows_the_certificates_domains_and_expiry():
    held = Certificate(
        "/etc/letsencrypt/live/x/fullchain.pem", ("a.test", "www.a.test"), "2031-12-01T00:00:00Z"
    )
    assert status.certificate(held) == "a.test,www.a.test until 2031-12-01"
    assert status.certificate(None) == "-"
