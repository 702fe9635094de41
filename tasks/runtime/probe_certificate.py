"""certificate's part of the probe (runtime/probe.py runs it): the certificate the site serves.

asked: {"cert": PATH, "renewal": PATH} with https; {} without
"""

import os
import time

from probe import read_text


def gather(asked):
    return {"certificate": certificate(asked)}


def certificate(tls):
    """The site's certificate (https): its DNS names, its expiry in UTC, the ACME directory of its
    renewal configuration; None when there is none. Read with the ssl module's own decoder."""
    if not tls or not os.path.isfile(tls["cert"]):
        return None
    import ssl  # here: its import is a tenth of the probe's start, and most sites have no certificate

    try:
        decoded = ssl._ssl._test_decode_cert(tls["cert"])
        expires = time.gmtime(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except (ssl.SSLError, OSError, ValueError, KeyError):
        return {"path": tls["cert"]}
    server = ""
    for line in read_text(tls.get("renewal") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "server":
            server = value.strip()
    return {
        "path": tls["cert"],
        "domains": [value for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS"],
        "not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", expires),
        "server": server,
    }
