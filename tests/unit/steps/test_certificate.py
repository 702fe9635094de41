"""certificate (steps/certificate.py): with https.mode acme, certbot obtains a certificate only when the
one the site has does not cover https.domains from https.directory; a private CA trusted; certbot missing."""

from dataclasses import replace

import pytest

from tasks.facts import PathState
from tasks.steps import certificate
from tasks.steps.certificate import Certificate
from tasks.steps.provision import Packages
from tests.unit.conftest import amended, converged_facts, paths_of, plan_one
from tests.unit.test_https import PEBBLE, acme


def certified(s, facts, domains=("app.test",), server=PEBBLE):
    paths = paths_of(s)
    return amended(
        replace(
            facts,
            paths={
                **facts.paths,
                paths.certbot_fullchain: PathState.link("../../archive/flaskdemo/fullchain1.pem"),
            },
        ),
        Packages,
        installed=facts.of(Packages).installed | {"certbot"},
    ).having(Certificate(paths.certbot_fullchain, domains, "2031-12-01T00:00:00Z", server))


def test_no_certificate_yet_certbot_obtains_one_then_the_site_gets_its_443_server(settings):
    s = acme(settings)
    converged = converged_facts(settings)
    facts = amended(converged, Packages, installed=converged.of(Packages).installed | {"certbot"})
    step = plan_one(s, facts, certificate.STEP)
    assert step.commands == (
        "obtain_certificate app.test",
        "enable_site files/nginx-site-tls 1",
        "reload_nginx 1",
    )
    assert "listen 443 ssl" in step.files["files/nginx-site-tls"].decode()
    assert step.why == (f"no certificate yet: obtain one for app.test from {PEBBLE}",)


def test_a_certificate_for_the_domains_from_the_directory_is_left_to_certbots_timer(settings):
    s = acme(settings)
    assert not plan_one(s, certified(s, converged_facts(settings)), certificate.STEP).acts


@pytest.mark.parametrize(
    ("domains", "server", "why"),
    [
        (("old.test",), PEBBLE, "the certificate is for old.test: obtain one for app.test"),
        (("app.test",), "https://other.test/dir", "the certificate is from https://other.test/dir"),
    ],
)
def test_other_domains_or_another_ca_get_a_new_certificate(settings, domains, server, why):
    s = acme(settings)
    step = plan_one(s, certified(s, converged_facts(settings), domains, server), certificate.STEP)
    assert step.commands[0] == "obtain_certificate app.test" and step.why[0].startswith(why)


def test_a_private_ca_bundle_is_trusted_by_certbot_and_its_renewals(settings, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    s = acme(settings, ca_bundle=bundle)
    step = plan_one(s, certified(s, converged_facts(settings)), certificate.STEP)
    assert step.commands == ("trust_acme_ca files/acme-ca.pem",)
    assert step.files["files/acme-ca.pem"] == bundle.read_bytes()


def test_without_certbot_the_step_alone_names_provision(settings):
    step = plan_one(acme(settings), converged_facts(settings), certificate.STEP)
    assert step.blocked == "certbot is not installed: run `fab provision` first"
