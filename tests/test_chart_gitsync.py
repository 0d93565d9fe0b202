"""The Git service in the Helm chart (gitsync.*, gitsyncDeployment), rendered by the real
`helm`: off by default; on, its own Deployment running `aglais-hub gitsync serve` with the
hub service contract, a claim for its working copies (and SQLite), a Service the hub
registers by URL with the token the pod presents, a key generated once and kept on every
upgrade, and NetworkPolicies that let it reach the hub, the proxy and the Git hosts only;
nothing of it when gitsync.url names a service elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aglais_hub.config import apply_defaults, load_values
from aglais_hub.gitsync.settings import settings_from_values
from aglais_hub.gitsync.vault import Vault
from aglais_hub.hubconfig import GITSYNC, hub_config
from tests.chart_render import (
    CI_VALUES,
    NAMESPACE,
    assert_locked_down,
    by_kind,
    hub_values,
    named,
    render,
    secret_data,
    with_lookup_returning,
)

CI = {path.name.removesuffix("-values.yaml"): path for path in CI_VALUES}
ON = ("production", "existing-secret")  # the ci values files that turn it on
SERVICE_URL = f"http://aglais-gitsync.{NAMESPACE}.svc:8091"
PROXY_ORIGIN = f"http://aglais-proxy-public.{NAMESPACE}.svc:80"
USER_NS = {
    "namespaceSelector": {
        "matchLabels": {
            "app.kubernetes.io/component": "user-namespace",
            "app.kubernetes.io/managed-by": "aglais-hub",
        }
    }
}


@pytest.fixture(scope="module")
def on() -> list[dict]:
    """PostgreSQL, a URL prefix, proxyIngressFrom and narrowed egress (production)."""
    return render(CI["production"])


@pytest.fixture(scope="module")
def sqlite() -> list[dict]:
    """The defaults: SQLite, no prefix, default egress, the admin's own Secret."""
    return render(CI["existing-secret"])


def gitsync_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["metadata"]["labels"].get("component") == "gitsync"]


def pod(objects: list[dict]) -> dict:
    return named(objects, "Deployment", "-gitsync")["spec"]["template"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def secret_refs(container: dict) -> dict[str, dict]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}


def hub_container(objects: list[dict]) -> dict:
    return named(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]


def services(values: dict, environ: dict) -> dict[str, dict]:
    """The hub's services, by name, from the values the chart gives it (default-filled)."""
    value = hub_config(apply_defaults(values), environ).JupyterHub.services
    listed = value.get_value([]) if hasattr(value, "get_value") else list(value)
    return {s["name"]: s for s in listed}


def peers_naming(objects: list[dict], component: str) -> list[str]:
    """The NetworkPolicies that name ``component``'s pods as a peer."""
    found = []
    for policy in by_kind(objects, "NetworkPolicy"):
        rules = policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
        for rule in rules:
            for peer in rule.get("from", []) + rule.get("to", []):
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                if labels.get("app.kubernetes.io/component") == component:
                    found.append(policy["metadata"]["name"])
    return found


def test_off_by_default_renders_nothing_of_the_git_service():
    for name in sorted(set(CI) - set(ON)):
        objects = render(CI[name])
        assert gitsync_objects(objects) == [], name
        assert peers_naming(objects, "gitsync") == [], name
        assert "AGLAIS_GITSYNC_API_TOKEN" not in env_of(hub_container(objects)), name
        values = hub_values(objects)
        assert values["gitsync"]["enabled"] is False and values["gitsync"]["url"] == "", name
        assert GITSYNC not in services(values, {}), name


def test_a_service_elsewhere_gitsync_url_renders_none_and_the_hub_registers_that_url():
    external = "http://git.example.org:8091"
    objects = render(CI["minimal"], sets=("gitsync.enabled=true", f"gitsync.url={external}"))
    assert gitsync_objects(objects) == []
    assert not [c for c in by_kind(objects, "PersistentVolumeClaim") if "gitsync" in str(c)]
    assert peers_naming(objects, "gitsync") == []
    values = hub_values(objects)
    assert values["gitsync"]["url"] == external
    assert values["gitsync"]["serversUrl"] == ""  # that service's own business
    # the hub still registers it, with the token from the Secret (the admin gives it there)
    token = secret_data(named(objects, "Secret", "-secrets"))["gitsync-api-token"]
    assert secret_refs(hub_container(objects))["AGLAIS_GITSYNC_API_TOKEN"] == {
        "name": "aglais-secrets",
        "key": "gitsync-api-token",
    }
    service = services(values, {"AGLAIS_GITSYNC_API_TOKEN": token})[GITSYNC]
    assert service["url"] == external and service["api_token"] == token
    assert "command" not in service


def test_on_renders_its_deployment_service_claim_and_policy(on, sqlite):
    for objects in (on, sqlite):
        assert sorted(o["kind"] for o in gitsync_objects(objects)) == [
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Service",
        ]
        deployment = named(objects, "Deployment", "-gitsync")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        service = named(objects, "Service", "-gitsync")
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 8091, "targetPort": "http", "protocol": "TCP"}
        ]


def test_the_pod_runs_the_service_with_the_hub_service_contract(on):
    template = pod(on)
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["aglais-hub", "gitsync", "serve"]
    assert container["image"] == hub_container(on)["image"]  # the hub image: git, ssh
    assert container["ports"] == [{"name": "http", "containerPort": 8091}]
    env = {name: e.get("value") for name, e in env_of(container).items()}
    assert env["AGLAIS_VALUES"] == "/etc/aglais/values.yaml"
    assert env["AGLAIS_GITSYNC_IP"] == "0.0.0.0"  # server.py's bind address
    assert env["JUPYTERHUB_API_URL"] == f"http://aglais-hub.{NAMESPACE}.svc:8081/aglais/hub/api"
    assert env["JUPYTERHUB_BASE_URL"] == "/aglais/"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/aglais/services/gitsync/"
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:8091"
    assert env["JUPYTERHUB_CLIENT_ID"] == "service-gitsync"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/aglais/services/gitsync/oauth_callback"
    assert secret_refs(container) == {
        "JUPYTERHUB_API_TOKEN": {"name": "aglais-secrets", "key": "gitsync-api-token"},
        "AGLAIS_GITSYNC_KEY": {"name": "aglais-secrets", "key": "gitsync-key"},
        "AGLAIS_GITSYNC_DB_URL": {
            "name": "aglais-secrets",
            "key": "gitsync-db-url",
            "optional": True,
        },
    }
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {
            "path": "/aglais/services/gitsync/api/health",
            "port": "http",
        }
    # a changed values file restarts it, as it does the hub
    hub_pod = named(on, "Deployment", "-hub")["spec"]["template"]
    assert (
        template["metadata"]["annotations"]["checksum/values"]
        == hub_pod["metadata"]["annotations"]["checksum/values"]
    )
    assert template["spec"]["nodeSelector"] == {"node-role.example.org/services": "true"}


def test_the_pod_keeps_working_copies_and_sqlite_on_its_claim_and_is_locked_down(on, sqlite):
    for objects, size, storage_class in ((on, "20Gi", "fast-rwo"), (sqlite, "5Gi", None)):
        spec = pod(objects)["spec"]
        (container,) = spec["containers"]
        claim = named(objects, "PersistentVolumeClaim", "-gitsync-data")
        assert claim["spec"]["resources"]["requests"]["storage"] == size
        assert claim["spec"].get("storageClassName") == storage_class
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        data = mounts[container["workingDir"]]
        assert container["workingDir"] == "/srv/gitsync"
        assert volumes[data["name"]]["persistentVolumeClaim"]["claimName"] == "aglais-gitsync-data"
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # git's HOME, askpass, ssh keys
        values_mount = mounts["/etc/aglais"]
        assert values_mount["readOnly"] is True
        assert volumes[values_mount["name"]]["secret"]["secretName"] == "aglais-values"
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["fsGroup"] == 1000  # the claim is writable
        assert_locked_down(container)
    # what the service makes of the values it is given: relative paths on the claim
    settings = settings_from_values(apply_defaults(hub_values(sqlite)), {})
    assert not settings.workdir.is_absolute()
    assert settings.db_url == "sqlite:///gitsync.sqlite"  # relative: on the claim too
    assert settings.port == 8091


def test_the_hub_values_name_its_service_and_the_proxy_for_users_servers(on, sqlite, tmp_path):
    for name, objects, prefix in (("on", on, "/aglais/"), ("sqlite", sqlite, "/")):
        values = hub_values(objects)
        assert values["gitsync"]["url"] == SERVICE_URL
        assert values["gitsync"]["serversUrl"] == PROXY_ORIGIN  # hub.baseUrl is added
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        checked = load_values(path)  # check-config accepts what the chart sets
        settings = settings_from_values(checked, {})
        assert settings.servers_url == PROXY_ORIGIN + prefix
    # the admin's address wins
    objects = render(CI["existing-secret"], sets=("gitsync.serversUrl=https://aglais.example.org",))
    assert hub_values(objects)["gitsync"]["serversUrl"] == "https://aglais.example.org"


def test_the_hub_registers_the_token_the_service_presents(on, tmp_path):
    secret = secret_data(named(on, "Secret", "-secrets"))
    (container,) = pod(on)["spec"]["containers"]
    own = secret_refs(container)["JUPYTERHUB_API_TOKEN"]
    assert secret_refs(hub_container(on))["AGLAIS_GITSYNC_API_TOKEN"] == own
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(hub_values(on)))
    environ = {"AGLAIS_GITSYNC_API_TOKEN": secret[own["key"]]}
    service = services(load_values(path), environ)[GITSYNC]
    assert service["url"] == SERVICE_URL
    assert service["api_token"] == secret["gitsync-api-token"]
    assert "command" not in service  # the hub does not start it: its pod does
    # the database URL with its password only in the Secret
    assert secret["gitsync-db-url"] == (
        "postgresql+psycopg://gitsync:ci-gitsync-db-password@postgres.databases.svc:5432/gitsync"
    )
    assert "ci-gitsync-db-password" not in yaml.safe_dump(hub_values(on))
    environ = {"AGLAIS_GITSYNC_DB_URL": secret["gitsync-db-url"]}
    settings = settings_from_values(apply_defaults(hub_values(on)), environ)
    assert settings.db_url == secret["gitsync-db-url"]


def test_the_key_is_generated_once_and_kept_on_every_upgrade(tmp_path):
    """The key seals users' Git tokens and deploy keys: a new one would make every stored
    token unreadable. It is made at the first install, gitsync on or off, so turning the
    service on later keeps it too."""
    first = named(render(CI["minimal"]), "Secret", "-secrets")  # gitsync off
    again = secret_data(named(render(CI["minimal"]), "Secret", "-secrets"))
    values = secret_data(first)
    for key in ("gitsync-key", "gitsync-api-token"):
        assert len(values[key]) == 64 and int(values[key], 16) >= 0, key
        assert again[key] != values[key], key  # a fresh install: fresh values
    assert values["gitsync-key"] not in (values["crypt-key"], values["gitsync-api-token"])
    assert "gitsync-db-url" not in values
    Vault.from_environ({"AGLAIS_GITSYNC_KEY": values["gitsync-key"]})  # a key it accepts
    chart = with_lookup_returning(first, tmp_path)
    for sets in ((), ("gitsync.enabled=true",)):
        objects = render(CI["minimal"], chart=chart, sets=sets)
        upgraded = secret_data(named(objects, "Secret", "-secrets"))
        assert upgraded["gitsync-key"] == values["gitsync-key"], sets
        assert upgraded["gitsync-api-token"] == values["gitsync-api-token"], sets
    assert named(objects, "Deployment", "-gitsync")  # the last upgrade turned it on
    # sealed before the upgrade, opened after it
    sealed = Vault.from_environ({"AGLAIS_GITSYNC_KEY": values["gitsync-key"]}).seal("t", "alice")
    reopened = Vault.from_environ({"AGLAIS_GITSYNC_KEY": upgraded["gitsync-key"]})
    assert reopened.open(sealed, "alice") == "t"


def test_an_existing_secret_holds_its_keys(sqlite):
    assert not [s for s in by_kind(sqlite, "Secret") if s["metadata"]["name"].endswith("-secrets")]
    (container,) = pod(sqlite)["spec"]["containers"]
    refs = secret_refs(container)
    assert {r["name"] for r in refs.values()} == {"aglais-secrets-from-vault"}
    assert {r["key"] for r in refs.values()} == {
        "gitsync-api-token",
        "gitsync-key",
        "gitsync-db-url",
    }
    assert (
        secret_refs(hub_container(sqlite))["AGLAIS_GITSYNC_API_TOKEN"]
        == refs["JUPYTERHUB_API_TOKEN"]
    )
    # docs/deploy.md tells the admin to put them in their Secret
    deploy = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    for key in ("gitsync-api-token", "gitsync-key", "gitsync-db-url"):
        assert key in deploy, key


def rules_for(spec: dict, direction: str, port: int) -> list[dict]:
    peer = "from" if direction == "ingress" else "to"
    return [
        p
        for rule in spec[direction]
        if {"protocol": "TCP", "port": port} in rule.get("ports", [])
        for p in rule.get(peer, [{"anyone": True}])
    ]


def component(peer: dict) -> str:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component", "")


def test_its_policy_lets_in_the_proxy_and_the_hub_and_out_to_hub_proxy_and_git_hosts(on, sqlite):
    for objects in (on, sqlite):
        policy = named(objects, "NetworkPolicy", "-gitsync")["spec"]
        labels = pod(objects)["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items()
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        (rule,) = policy["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8091}]
        assert {component(p) for p in rule["from"]} == {"proxy", "hub"}
        assert USER_NS not in rule["from"]  # users' pods have no business there
        assert {component(p) for p in rules_for(policy, "egress", 8081)} == {"hub"}
        assert {component(p) for p in rules_for(policy, "egress", 8000)} == {"proxy"}
        dns = [r for r in policy["egress"] if {"protocol": "UDP", "port": 53} in r["ports"]]
        assert dns and "to" not in dns[0]
    # the default: HTTPS and SSH to any address but the cloud metadata one
    default = named(sqlite, "NetworkPolicy", "-gitsync")["spec"]["egress"]
    (hosts,) = [r for r in default if {"protocol": "TCP", "port": 22} in r["ports"]]
    assert hosts["ports"] == [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 22}]
    assert hosts["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
        {"ipBlock": {"cidr": "::/0"}},
    ]
    # networkPolicy.gitsyncEgress replaces it: production names its forge and its database
    egress = named(on, "NetworkPolicy", "-gitsync")["spec"]["egress"]
    assert (
        egress[-2:]
        == yaml.safe_load(CI["production"].read_text())["networkPolicy"]["gitsyncEgress"]
    )
    assert not [r for r in egress if "0.0.0.0/0" in str(r)]


def test_the_proxy_and_the_hub_let_the_git_service_in_and_reach_it(on, sqlite):
    proxy = named(on, "NetworkPolicy", "-proxy")["spec"]
    public = rules_for(proxy, "ingress", 8000)
    # proxyIngressFrom, and the Git service, which reaches users' servers through it
    assert {component(p) for p in public} == {"", "gitsync"}
    assert {component(p) for p in rules_for(proxy, "egress", 8091)} == {"gitsync"}
    # without proxyIngressFrom anyone reaches the public port, the Git service too
    open_proxy = named(sqlite, "NetworkPolicy", "-proxy")["spec"]
    assert rules_for(open_proxy, "ingress", 8000) == [{"anyone": True}]
    for objects in (on, sqlite):
        hub = named(objects, "NetworkPolicy", "-hub")["spec"]
        assert "gitsync" in {component(p) for p in rules_for(hub, "ingress", 8081)}
        # the hub checks its services' URLs
        assert {component(p) for p in rules_for(hub, "egress", 8091)} == {"gitsync"}


def test_the_testing_clusters_node_agent_runs_its_container_from_this_checkout(sqlite, tmp_path):
    """On the testing cluster the hub image's containers are local processes: the Git
    service's is this venv's `aglais-hub gitsync serve`, at its claim, on the pod's IP."""
    from aglais_hub.testing.nodeagent.images import ContainerContext, default_registry

    spec = pod(sqlite)["spec"]
    (container,) = spec["containers"]
    builder = default_registry().builder_for(container["image"])
    values, data, tmp = tmp_path / "values", tmp_path / "data", tmp_path / "tmp"
    for directory in (values, data, tmp):
        directory.mkdir()
    mounts = {"/etc/aglais": values, "/srv/gitsync": data, "/tmp": tmp}
    env = {e["name"]: e.get("value", "from-the-secret") for e in container["env"]}
    manifest = {"metadata": {"name": "aglais-gitsync-1", "namespace": NAMESPACE}, "spec": spec}
    command = builder(ContainerContext(manifest, container, "127.10.0.9", env, mounts, tmp_path))
    assert Path(command.argv[0]).name == "aglais-hub" and Path(command.argv[0]).exists()
    assert command.argv[1:] == ["gitsync", "serve"]
    assert command.cwd == data  # the working copies and SQLite land on the claim
    assert command.env["AGLAIS_VALUES"] == str(values / "values.yaml")
    assert command.env["AGLAIS_GITSYNC_IP"] == "127.10.0.9"  # all addresses: the pod's
    assert command.env["JUPYTERHUB_SERVICE_URL"] == "http://127.10.0.9:8091"
