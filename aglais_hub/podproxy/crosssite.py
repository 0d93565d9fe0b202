"""The auth proxy's cross-site rules, as pure functions of a request's headers.

Zeppelin runs anonymous behind the proxy, so the proxy's login cookie is the only thing
between a web page the user visits and code execution as that user. The rules follow
JupyterHub (`jupyterhub._xsrf_utils`: a token-authenticated request is not exposed to
cross-site use; a cookie-authenticated one must prove it is not cross-site, else it is
refused) and tornado 6.6's cross-origin protection (``Sec-Fetch-Site``, else ``Origin``
against ``Host``). JupyterHub's proof is its own ``_xsrf`` token, which Zeppelin's UI
cannot send, so here the proof is what every current browser sends by itself:

- ``Sec-Fetch-Site: same-origin``; any other value (``cross-site``, ``same-site``,
  ``none``) is refused;
- without ``Sec-Fetch-Site`` (plain-HTTP hubs on a public address): an ``Origin`` whose
  host is the request's ``Host`` (or one of the hub's public origins); without
  ``Origin`` either, the same of the ``Referer``;
- none of the three: refused, as JupyterHub refuses a cookie POST without its token
  (a script should use an API token: ``Authorization: token ...``).

Safe methods (GET, HEAD, OPTIONS) are not checked: the cookie is ``SameSite=Lax``, and
the proxy removes Zeppelin's CORS headers, so another site can neither send it on a
sub-request nor read an answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _host_port(netloc: str, scheme: str = "") -> str:
    """``host[:port]`` lower-cased, without the scheme's default port (or :80/:443 when
    the scheme is unknown, as for a ``Host`` header)."""
    netloc = netloc.strip().lower().rpartition("@")[2]
    host, colon, port = netloc.rpartition(":")
    if not colon or "]" in port:  # no port (or the tail of an IPv6 literal)
        return netloc
    defaults = {DEFAULT_PORTS[scheme]} if scheme in DEFAULT_PORTS else {"80", "443"}
    return host if port in defaults else netloc


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an Origin header or a URL; None for ``null`` or junk."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return None
    return f"{parts.scheme}://{_host_port(parts.netloc, parts.scheme)}"


def origin_allowed(origin: str, host: str, public_origins: Iterable[str] = ()) -> bool:
    """Is ``origin`` (an Origin header, or a Referer URL) the request's own ``Host``, or
    one of the hub's public origins (``JUPYTERHUB_PUBLIC_URL``)?

    Like tornado's and Jupyter Server's check the scheme is not compared with the host
    (a TLS-terminating proxy may not say the request was HTTPS)."""
    found = origin_of(origin)
    if found is None:
        return False
    if host and _host_port(urlsplit(found).netloc) == _host_port(host):
        return True
    return found in {origin_of(o) for o in public_origins}


def cross_site_refusal(
    method: str,
    headers: Mapping[str, str],
    *,
    token_authenticated: bool = False,
    public_origins: Iterable[str] = (),
) -> str | None:
    """Why the proxy must refuse this request as (possibly) cross-site; None if it may pass.

    ``headers`` is case-insensitive (tornado's ``HTTPHeaders``); ``Host`` is read from it.
    ``token_authenticated``: the hub accepted an ``Authorization: token`` for it (a page
    on another site cannot make a browser send that header without CORS, which the
    proxy never grants).
    """
    method = method.upper()
    if method not in UNSAFE_METHODS or token_authenticated:
        return None
    public_origins = list(public_origins)
    host = headers.get("Host", "")
    fetch_site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    origin = headers.get("Origin")
    advice = (
        "a browser's page may change this server only from its own origin; "
        "a script must use an API token (Authorization: token ...)"
    )
    if fetch_site:
        if fetch_site == "same-origin":
            return None
        return f"cross-site request refused: {method} with Sec-Fetch-Site: {fetch_site} ({advice})"
    if origin is not None:
        if origin_allowed(origin, host, public_origins):
            return None
        return (
            f"cross-site request refused: {method} from Origin {origin} to host {host} ({advice})"
        )
    referer = headers.get("Referer")
    if referer:
        if origin_allowed(referer, host, public_origins):
            return None
        return (
            f"cross-site request refused: {method} from Referer {origin_of(referer) or '?'} "
            f"to host {host} ({advice})"
        )
    return (
        f"cross-site request refused: {method} without Origin, Referer or Sec-Fetch-Site "
        f"cannot be told apart from a cross-site one ({advice})"
    )


def public_origins_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The hub's public origins, from the URLs JupyterHub gives every server."""
    found = []
    for key in ("JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL"):
        origin = origin_of(environ.get(key, "") or "")
        if origin and origin not in found:
            found.append(origin)
    return tuple(found)


def is_cors_header(name: str) -> bool:
    """Zeppelin answers any Origin with ``Access-Control-Allow-Origin: <it>`` and
    ``-Credentials: true`` (its ``zeppelin.server.allowed.origins`` is ``*``); the proxy
    drops every ``Access-Control-*`` header of Zeppelin's, so no other origin may read
    an answer made with the user's cookie (same-origin pages need none)."""
    return name.lower().startswith("access-control-")
