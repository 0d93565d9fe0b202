"""OpenID Connect discovery: an issuer URL in, the provider's endpoints out."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request


class DiscoveryError(RuntimeError):
    """The issuer's discovery document could not be read or lacks an endpoint."""


REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")


def discovery_url(issuer: str) -> str:
    """Where an issuer publishes its configuration (OpenID Connect Discovery 1.0, §4)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def fetch_provider_config(issuer: str, verify_tls: bool = True, timeout: float = 10) -> dict:
    """Read and check an issuer's discovery document.

    Blocking on purpose: it runs once, when the authenticator first needs an
    endpoint, and the hub cannot log anyone in without it.
    """
    url = discovery_url(issuer)
    context = None if verify_tls else ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            config = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DiscoveryError(f"cannot read {url}: {e}") from e
    if config.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise DiscoveryError(
            f"{url} names issuer {config.get('issuer')!r}, not {issuer!r} (check auth.issuer)"
        )
    missing = [k for k in REQUIRED_ENDPOINTS if not config.get(k)]
    if missing:
        raise DiscoveryError(f"{url} lacks {', '.join(missing)}")
    return config
