"""Map a values document onto JupyterHub traitlets, the way zero-to-jupyterhub does.

`hub_config(values)` is pure: values in, a traitlets `Config` out. The
`config/jupyterhub_config.py` file only loads the values file and merges this.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from traitlets.config import Config

from spawners.zeppelin.spec import kubernetes_settings

from .culler import add_culler
from .offering import TIER_PROFILE, offering_from_values

SPAWNER_CLASSES = {
    "local-spark": "spawners.local_spark.LocalSparkSpawner",
    "zeppelin": "spawners.zeppelin.spawner.ZeppelinSpawner",
}
GATE_MARGIN_SECONDS = 60  # the spawn gate's calls around a queue wait, in the hub's bound
SPAWNER_CONFIG_NAMES = {"local-spark": "LocalSparkSpawner", "zeppelin": "ZeppelinSpawner"}
AUTHENTICATOR_CLASS = "authenticators.aglais.AglaisOAuthenticator"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def public_url(hub: dict) -> str:
    """Where users reach the platform, without a trailing slash."""
    return (hub["publicUrl"] or f"http://{hub['ip']}:{hub['port']}").rstrip("/")


def callback_url(hub: dict) -> str:
    """The OAuth redirect URI to register at the identity provider."""
    return public_url(hub) + hub["baseUrl"].rstrip("/") + "/hub/oauth_callback"


def proxy_command(hub: dict) -> list[str]:
    """configurable-http-proxy: as configured, else on PATH, else in node_modules."""
    if hub["proxyCommand"]:
        return list(hub["proxyCommand"])
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    return [str(PROJECT_ROOT / "node_modules" / ".bin" / "configurable-http-proxy")]


RESERVATIONS = "reservations"  # the service's name: /services/reservations/
SPAWN_GATE = "spawn-gate"  # the hub service whose token the spawners show to spawn-check
SERVER_SCOPES = [
    "users:activity!user",
    "access:servers!server",
]  # JupyterHub's `server` role
# Read one's own booking notices at the reservation service (`api/notices` only). Servers'
# own tokens carry this instead of access:services!service=reservations, so code in a
# notebook cannot book or cancel as its owner; the auth proxy shows the notices.
NOTICES_SCOPE = "custom:reservations:notices"
# what the reservation service may do at the hub: read users and servers, stop a
# booking's server when it ends, report activity so the culler spares booked servers
RESERVATIONS_SCOPES = [
    "list:users",
    "read:users",
    "read:servers",
    "delete:servers",
    "users:activity",
]


def reservation_services(values: dict, environ: Mapping[str, str]) -> dict:
    """The reservation service and the spawn gate as hub services, roles and spawner settings.

    With ``reservations.url`` empty the hub runs the service itself (managed service);
    otherwise it is reached at that URL (its own Deployment in the chart). Tokens come
    from ``AGLAIS_RESERVATIONS_API_TOKEN`` and ``AGLAIS_GATE_TOKEN`` (a fresh random gate
    token when unset: the hub and its spawners share this config, so it still matches).
    """
    r = values["reservations"]
    hub = values["hub"]
    service: dict = {
        "name": RESERVATIONS,
        "display": True,
        "oauth_no_confirm": True,
        "info": {"description": "Book a cluster size for a time window"},
    }
    if environ.get("AGLAIS_RESERVATIONS_API_TOKEN"):
        service["api_token"] = environ["AGLAIS_RESERVATIONS_API_TOKEN"]
    if r["url"]:
        service["url"] = r["url"]
    else:
        service["url"] = f"http://127.0.0.1:{r['port']}"
        service["command"] = [sys.executable, "-m", "aglais_hub.cli", "reservations", "serve"]
        keep = ("AGLAIS_VALUES", "AGLAIS_RESERVATIONS_DB_URL", "PATH", "PYTHONPATH")
        service["environment"] = {k: environ[k] for k in keep if k in environ}
    gate_token = environ.get("AGLAIS_GATE_TOKEN") or secrets.token_hex(32)
    prefix = hub["baseUrl"].rstrip("/") + f"/services/{RESERVATIONS}/"
    return {
        "services": [service, {"name": SPAWN_GATE, "api_token": gate_token}],
        "roles": [
            {
                "name": "aglais-reservations",
                "services": [RESERVATIONS],
                "scopes": RESERVATIONS_SCOPES,
            },
            {
                "name": "aglais-spawn-gate",
                "services": [SPAWN_GATE],
                "scopes": [f"access:services!service={RESERVATIONS}"],
            },
        ],
        "custom_scopes": {
            NOTICES_SCOPE: {"description": "Read your booking notices at the reservation service."}
        },
        "user_scopes": {f"access:services!service={RESERVATIONS}", f"{NOTICES_SCOPE}!user"},
        "server_token_scopes": [*SERVER_SCOPES, f"{NOTICES_SCOPE}!user"],
        "gate_url": service["url"].rstrip("/") + prefix,
        "gate_token": gate_token,
    }


GITSYNC = "gitsync"  # the Git service's name: /services/gitsync/
# What the Git service's OAuth logins may do for their user: reach that user's own servers
# (the contents API, for imports and commits), nothing else. JupyterHub narrows `!user`
# to the logged-in user and intersects it with what the user may do.
GITSYNC_OAUTH_SCOPES = ["access:servers!user"]
# The service's key and database URL come from the hub's environment (secrets); the hub's
# own crypt key only when the service has no key of its own.
GITSYNC_ENV = ("AGLAIS_VALUES", "AGLAIS_GITSYNC_DB_URL", "PATH", "PYTHONPATH")


def gitsync_service(values: dict, environ: Mapping[str, str]) -> dict:
    """The Git service as a hub service: in the navbar's services menu, no consent page,
    no hub role (it acts with its callers' own tokens: gitsync/contents.py), and the user
    scope that lets users log in to it. ``{"service": {...}, "user_scope": str}``. Pure."""
    g = values["gitsync"]
    service: dict = {
        "name": GITSYNC,
        "display": True,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": list(GITSYNC_OAUTH_SCOPES),
        "info": {"description": "Link Git repositories: import and commit notebooks"},
    }
    if environ.get("AGLAIS_GITSYNC_API_TOKEN"):
        service["api_token"] = environ["AGLAIS_GITSYNC_API_TOKEN"]
    if g["url"]:
        service["url"] = g["url"]
    else:
        service["url"] = f"http://127.0.0.1:{g['port']}"
        service["command"] = [sys.executable, "-m", "aglais_hub.cli", "gitsync", "serve"]
        env = {k: environ[k] for k in GITSYNC_ENV if k in environ}
        key = environ.get("AGLAIS_GITSYNC_KEY") or environ.get("JUPYTERHUB_CRYPT_KEY")
        if key:  # managed services inherit nothing else from the hub's environment
            env["AGLAIS_GITSYNC_KEY"] = key
        service["environment"] = env
    return {"service": service, "user_scope": f"access:services!service={GITSYNC}"}


BENCHMARK = "benchmark"  # the nightly benchmark's hub service (aglais_hub.benchmark.nightly)
BENCHMARK_TOKEN_ENV = "AGLAIS_BENCHMARK_API_TOKEN"  # its token, from the chart's Secret


def benchmark_token_scopes(user: str, reservations: bool) -> list[str]:
    """What a benchmark run's token for ``user`` may do: read the user and their servers,
    start and stop them, use them (Jupyter's API), and the reservation service. Pure."""
    scopes = [
        f"read:users!user={user}",
        f"servers!user={user}",
        f"access:servers!user={user}",
    ]
    if reservations:
        scopes.append(f"access:services!service={RESERVATIONS}")
    return scopes


def benchmark_service(values: dict, environ: Mapping[str, str]) -> dict:
    """The nightly benchmark as a hub service (no URL, no command: the chart's CronJob
    runs it with the token) and its role: make, list and revoke tokens for exactly
    ``benchmark.users`` (``tokens!user=<u>``), and send its summary to the reservation
    service. JupyterHub bounds a new token's scopes by its owner's, not the requester's,
    so the role needs nothing more; the nightly run asks for `benchmark_token_scopes`
    only. ``{"service": {...}, "role": {...}}``. Pure."""
    scopes = [f"tokens!user={user}" for user in values["benchmark"]["users"]]
    if values["reservations"]["enabled"]:
        scopes.append(f"access:services!service={RESERVATIONS}")
    service: dict = {"name": BENCHMARK}
    if environ.get(BENCHMARK_TOKEN_ENV):
        service["api_token"] = environ[BENCHMARK_TOKEN_ENV]
    role = {"name": f"aglais-{BENCHMARK}", "services": [BENCHMARK], "scopes": scopes}
    return {"service": service, "role": role}


def hub_config(values: dict, environ: Mapping[str, str] | None = None) -> Config:
    """The traitlets Config for a validated, default-filled values document.

    ``environ`` supplies secrets (service tokens) and paths handed to managed services.
    """
    environ = {} if environ is None else environ
    hub, auth, spawner = values["hub"], values["auth"], values["spawner"]
    offering = offering_from_values(values)  # tiers and sizes, typed once for everyone
    c = Config()

    c.JupyterHub.ip = hub["ip"]
    c.JupyterHub.port = hub["port"]
    c.JupyterHub.base_url = hub["baseUrl"]
    if hub["publicUrl"]:
        # servers get it as JUPYTERHUB_PUBLIC_URL: the auth proxy's same-origin check uses it
        c.JupyterHub.public_url = public_url(hub) + hub["baseUrl"]
    # a URL with a password comes from a Secret, not from the values file
    c.JupyterHub.db_url = environ.get("AGLAIS_HUB_DB_URL") or hub["db"]["url"]
    c.JupyterHub.allow_named_servers = hub["allowNamedServers"]
    # After login users land on /hub/home and choose what to start.
    c.JupyterHub.redirect_to_server = False
    c.JupyterHub.authenticator_class = AUTHENTICATOR_CLASS
    c.JupyterHub.spawner_class = SPAWNER_CLASSES[spawner["kind"]]
    c.ConfigurableHTTPProxy.command = proxy_command(hub)
    # Groups come from the identity provider at every login, not from config.
    c.JupyterHub.load_groups = {}

    a = c.AglaisOAuthenticator
    a.issuer = auth["issuer"]
    a.client_id = auth["clientId"]
    if auth["clientSecret"]:
        a.client_secret = auth["clientSecret"]
    a.oauth_callback_url = callback_url(hub)
    a.login_service = auth["loginService"]
    a.scope = list(auth["scopes"])
    a.username_claim = auth["usernameClaim"]
    a.subject_claim = auth["subjectClaim"]
    a.groups_claim = auth["groupsClaim"]
    a.admin_groups = set(auth["adminGroups"])
    a.allowed_groups = set(auth["allowedGroups"])
    a.allow_all = auth["allowAll"]
    a.tier_groups = dict(auth["tierGroups"])
    a.tier_ranks = offering.ranks
    a.default_tier = auth["defaultTier"]
    a.refresh_pre_spawn = auth["refreshBeforeSpawn"]
    a.tls_verify = auth["tlsVerify"]

    s = c[SPAWNER_CONFIG_NAMES[spawner["kind"]]]
    s.offering = offering
    # startTimeout bounds the start proper; the hub's own bound also covers the time a
    # spawn may wait in the reservation service's queue (and the gate's calls)
    s.launch_timeout = spawner["startTimeout"]
    s.start_timeout = spawner["startTimeout"]
    s.http_timeout = spawner["httpTimeout"]
    if spawner["kind"] == "zeppelin":
        # pods outlive a hub restart (an upgrade must not stop everyone's work)
        c.JupyterHub.cleanup_servers = False
        k8s = spawner["kubernetes"]
        s.kubernetes = kubernetes_settings(values)
        # KubeSpawner's own templates: it expands every object name from them
        s.user_namespace_template = k8s["namespaceTemplate"]
        s.pod_name_template = k8s["podNameTemplate"]
        s.profile_list = [
            {
                "display_name": "My tier's cluster",
                "slug": TIER_PROFILE,
                "default": True,
                "description": "The driver and executors your tier gives you.",
            },
            *(
                {"display_name": size.display_name, "slug": name, "description": size.description}
                for name, size in offering.sizes.items()
            ),
        ]
    if values["reservations"]["enabled"]:
        r = values["reservations"]
        parts = reservation_services(values, environ)
        c.JupyterHub.services = parts["services"]
        c.JupyterHub.load_roles = parts["roles"]
        c.JupyterHub.custom_scopes = parts["custom_scopes"]
        c.JupyterHub.extra_user_scopes = parts["user_scopes"]
        s.reservations_url = parts["gate_url"]
        s.reservations_token = parts["gate_token"]
        s.queue_timeout = r["queueTimeoutMinutes"] * 60
        s.start_timeout = spawner["startTimeout"] + s.queue_timeout + GATE_MARGIN_SECONDS
        s.when_unreachable = r["whenUnreachable"]
        # servers' own tokens may read their owner's booking notices (the auth proxy's
        # banner) and nothing else at the service: no booking or cancelling from notebooks
        s.server_token_scopes = parts["server_token_scopes"]
    if spawner["kind"] == "local-spark":
        local = spawner["localSpark"]
        s.data_dir = local["dataDir"]
        s.notebook = local["notebook"]
        s.max_cores = local["maxCores"]
        s.catalogues = spawner["catalogues"]

    if values["gitsync"]["enabled"]:
        found = gitsync_service(values, environ)
        c.JupyterHub.services.append(found["service"])
        c.JupyterHub.extra_user_scopes.add(found["user_scope"])
    add_culler(c, values, environ)  # the idle culler service (on by default in the chart)
    if values["benchmark"]["enabled"]:
        found = benchmark_service(values, environ)
        c.JupyterHub.services.append(found["service"])
        c.JupyterHub.load_roles.append(found["role"])

    # The pass-through comes last so it can override anything above.
    c.merge(Config(hub["config"]))
    return c
