"""The Helm chart (chart/aglais): rendered by the real `helm` over every values file in
chart/aglais/ci/ (chart-testing's convention), every object validated for Kubernetes 1.30,
and the properties an admin relies on checked over every object.

`make helm` puts a helm into .venv/bin when none is on PATH (DESIGN.md says how).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from aglais_hub.chart import CHART, generated_files
from aglais_hub.config import _resolve, load_schema, load_values
from aglais_hub.culler import SCOPES, add_culler, culler_service
from aglais_hub.hubconfig import hub_config
from tests.chart_rbac import granted, needed_rights
from tests.chart_render import (
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    by_kind,
    containers,
    hub_values,
    named,
    pod_specs,
    render,
    run_helm,
    secret_data,
    with_lookup_returning,
)

CI = {path.name.removesuffix("-values.yaml"): path for path in CI_VALUES}
GENERATED_KEYS = [
    "crypt-key",
    "cookie-secret",
    "proxy-token",
    "reservations-api-token",
    "gate-token",
    "culler-api-token",
    "benchmark-api-token",
    "gitsync-api-token",
    "gitsync-key",
]
CRD_KINDS = {"ServiceMonitor"}  # not in Kubernetes' own schemas: checked by hand below


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(path) for name, path in CI.items()}


def every_object(rendered):
    for name, objects in rendered.items():
        for obj in objects:
            yield name, obj


def test_ci_values_cover_the_four_cases():
    assert {"minimal", "production", "data", "culler-off"} <= set(CI)


def test_values_and_schema_are_generated_from_the_one_values_schema():
    for path, text in generated_files().items():
        assert path.read_text() == text, f"{path.name} is stale: python -m aglais_hub.chart write"
    assert json.loads((CHART / "values.schema.json").read_text()) == load_schema()


def schema_keys(node: dict, root: dict, path: str = ""):
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, root)
        yield f"{path}{key}", sub.get("description", "")
        if "default" not in sub:
            yield from schema_keys(sub, root, f"{path}{key}.")


def test_values_yaml_documents_every_key():
    text = (CHART / "values.yaml").read_text()
    root = load_schema()
    for key, description in schema_keys(root, root):
        assert description, f"{key} has no description"
        assert "# " + " ".join(description.split())[:40] in text, key
    keys = [line.split(":")[0] for line in text.splitlines() if line[:1].isalpha()]
    assert keys == list(root["properties"])


@pytest.mark.parametrize("name", sorted(CI))
def test_helm_lint(name):
    result = run_helm("lint", "--strict", "--namespace", NAMESPACE, "--values", str(CI[name]))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_every_rendered_object_is_valid_kubernetes(rendered, version):
    objects = [(name, obj) for name, obj in every_object(rendered) if obj["kind"] not in CRD_KINDS]
    assert len(objects) >= 10 * len(rendered)  # every render makes its objects
    for name, obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = f"{name}: {obj['kind']} {obj['metadata']['name']}"
            raise AssertionError(f"{where} (Kubernetes {version}): {error}") from None


def test_service_monitors_scrape_the_metrics_of_the_hub_and_the_reservation_service(rendered):
    monitors = {m["metadata"]["name"]: m for m in by_kind(rendered["production"], "ServiceMonitor")}
    assert set(monitors) == {"aglais-hub", "aglais-reservations"}
    hub, reservations = monitors["aglais-hub"], monitors["aglais-reservations"]
    assert hub["apiVersion"] == "monitoring.coreos.com/v1"
    assert hub["metadata"]["labels"]["release"] == "prometheus"
    assert hub["spec"]["endpoints"] == [
        {"port": "http", "path": "/aglais/hub/metrics", "interval": "30s"}
    ]
    assert reservations["spec"]["endpoints"][0]["path"] == "/aglais/services/reservations/metrics"
    service = named(rendered["production"], "Service", "-reservations")
    assert (
        reservations["spec"]["selector"]["matchLabels"].items()
        <= service["spec"]["selector"].items()
    )
    assert not by_kind(rendered["minimal"], "ServiceMonitor")


def test_no_container_runs_privileged_or_as_root(rendered):
    for name, objects in rendered.items():
        assert len(list(containers(objects))) >= 2, name  # the hub and the proxy at least
        for workload, pod, container in containers(objects):
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            where = f"{name}: {workload}/{container['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) != 0, where
            assert not context.get("privileged"), where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where


def test_root_only_when_a_value_asks_for_it():
    objects = render(
        CI["minimal"],
        sets=("hubDeployment.runAsUser=0", "containerSecurityContext.runAsNonRoot=false"),
    )
    users = {c["name"]: c["securityContext"]["runAsUser"] for _, _, c in containers(objects)}
    assert users == {"hub": 0, "chp": 65534, "reservations": 1000}


def test_every_container_has_resource_requests(rendered):
    for name, objects in rendered.items():
        assert len(list(containers(objects))) >= 2, name
        for workload, _, container in containers(objects):
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), f"{name}: {workload}/{container['name']}"


def test_no_rbac_rule_uses_a_wildcard(rendered):
    rules = [
        (name, obj, rule)
        for name, obj in every_object(rendered)
        if obj["kind"] in ("Role", "ClusterRole")
        for rule in obj.get("rules", [])
    ]
    assert len({name for name, _, _ in rules}) == len(rendered)  # every render has a role
    for name, obj, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(field, []), f"{name}: {obj['metadata']['name']} {rule}"


def test_no_secret_value_in_a_config_map_or_a_plain_env_value(rendered):
    for name, objects in rendered.items():
        platform = [
            s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-secrets")
        ]
        secrets = [v for s in platform for v in secret_data(s).values()]
        # the generated ones at least, unless the admin brings the Secret
        assert len(secrets) >= 6 or name == "existing-secret", name
        outside = [o for o in objects if o not in platform]
        plain = [
            env["value"]
            for _, _, c in containers(objects)
            for env in c.get("env", [])
            if "value" in env
        ]
        config_maps = [json.dumps(c.get("data", {})) for c in by_kind(objects, "ConfigMap")]
        for secret in secrets:
            assert not any(secret in value for value in plain + config_maps), name
        # nor anywhere else: not in the hub's values file, not in annotations
        text = yaml.safe_dump_all(outside) + "".join(
            v for s in by_kind(outside, "Secret") for v in secret_data(s).values()
        )
        for secret in secrets:
            assert secret not in text, f"{name}: a secret value outside the platform's Secret"
    # the production file gives a client secret and database passwords in values
    production = rendered["production"]
    given = secret_data(named(production, "Secret", "-secrets"))
    assert given["oauth-client-secret"] == "ci-oidc-client-secret-value"
    assert "ci-hub-db-password" in given["hub-db-url"]
    assert hub_values(production)["auth"]["clientSecret"] == ""


def test_every_secret_env_var_comes_from_the_platforms_secret(rendered):
    secret_env = {
        "JUPYTERHUB_CRYPT_KEY",
        "JPY_COOKIE_SECRET",
        "CONFIGPROXY_AUTH_TOKEN",
        "OAUTH_CLIENT_SECRET",
        "AGLAIS_HUB_DB_URL",
        "AGLAIS_RESERVATIONS_API_TOKEN",
        "AGLAIS_GATE_TOKEN",
        "AGLAIS_CULLER_API_TOKEN",
        "JUPYTERHUB_API_TOKEN",
        "AGLAIS_RESERVATIONS_DB_URL",
        "AGLAIS_GITSYNC_API_TOKEN",
        "AGLAIS_GITSYNC_KEY",
        "AGLAIS_GITSYNC_DB_URL",
    }
    for name, objects in rendered.items():
        found = [
            (workload, env)
            for workload, _, container in containers(objects)
            for env in container.get("env", [])
            if env["name"] in secret_env
        ]
        assert len(found) >= 6, name  # the hub's and the reservation service's at least
        for workload, env in found:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] in ("aglais-secrets", "aglais-secrets-from-vault"), (
                f"{name}: {workload} {env['name']}"
            )


def test_hub_is_one_replica_replaced_on_upgrade(rendered):
    for name, objects in rendered.items():
        hub = named(objects, "Deployment", "-hub")
        assert hub["spec"]["replicas"] == 1, name
        assert hub["spec"]["strategy"] == {"type": "Recreate"}, name


def matches(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def test_every_component_has_a_network_policy(rendered):
    for name, objects in rendered.items():
        policies = by_kind(objects, "NetworkPolicy")
        if name == "culler-off":
            assert not policies
            continue
        workloads = {
            o["metadata"]["labels"]["component"]: o for o in by_kind(objects, "Deployment")
        }
        assert {"hub", "proxy"} <= set(workloads)
        for component, workload in workloads.items():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            found = [p for p in policies if matches(p["spec"]["podSelector"], labels)]
            assert len(found) == 1, f"{name}: {component}"
            assert found[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_network_policies_let_in_only_what_each_component_serves(rendered):
    objects = rendered["production"]
    policy = {
        p["metadata"]["labels"]["component"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")
    }

    def sources(spec: dict, port: int) -> list[dict]:
        return [
            peer
            for rule in spec["ingress"]
            if {"protocol": "TCP", "port": port} in rule["ports"]
            for peer in rule.get("from", [{"anyone": True}])
        ]

    def component(peer: dict) -> str:
        return (
            peer.get("podSelector", {})
            .get("matchLabels", {})
            .get("app.kubernetes.io/component", "other")
        )

    assert {component(p) for p in sources(policy["proxy"], 8001)} == {"hub"}
    assert sources(policy["proxy"], 8000) == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        # the Git service reaches users' servers through the proxy (test_chart_gitsync.py)
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "aglais",
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "gitsync",
                }
            }
        },
    ]
    hub_sources = sources(policy["hub"], 8081)
    assert {"proxy", "reservations", "hub"} <= {component(p) for p in hub_sources}
    user_ns = {
        "app.kubernetes.io/component": "user-namespace",
        "app.kubernetes.io/managed-by": "aglais-hub",
    }
    assert {"namespaceSelector": {"matchLabels": user_ns}} in hub_sources
    reservation_sources = sources(policy["reservations"], 8090)
    assert {component(p) for p in reservation_sources} >= {"proxy", "hub"}
    # users' auth proxies ask for their booking notices
    assert {"namespaceSelector": {"matchLabels": user_ns}} in reservation_sources
    egress_ports = {port["port"] for rule in policy["hub"]["egress"] for port in rule["ports"]}
    assert {53, 443, 6443, 8001, 8090, 8888, 5432} <= egress_ports


def test_users_pods_let_in_this_releases_proxy_and_hub(rendered):
    objects = rendered["minimal"]
    selector = hub_values(objects)["spawner"]["kubernetes"]["hubSelector"]
    assert selector["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    for component in ("proxy", "hub", "reservations"):
        labels = named(objects, "Deployment", f"-{component}")["spec"]["template"]["metadata"][
            "labels"
        ]
        assert matches(selector["podSelector"], labels)
        (expression,) = selector["podSelector"]["matchExpressions"]
        assert labels[expression["key"]] in expression["values"]


def test_a_typo_or_a_wrong_type_is_refused_naming_the_key(tmp_path):
    cases = {
        "auth.clientID": ({"auth": {"clientID": "x"}}, "clientID"),
        "hub.port": ({"hub": {"port": "8000"}}, "hub.port"),
        "proxy.service.typ": ({"proxy": {"service": {"typ": "NodePort"}}}, "typ"),
        "culler.timeout": ({"culler": {"timeout": "1h"}}, "culler.timeout"),
        "ingresss": ({"ingresss": {"enabled": True}}, "ingresss"),
    }
    for case, (values, named_key) in cases.items():
        path = tmp_path / f"{case}.yaml"
        path.write_text(yaml.safe_dump(values))
        result = run_helm(
            "template", RELEASE, "--values", str(CI["minimal"]), "--values", str(path)
        )
        assert result.returncode != 0, case
        assert named_key in result.stderr, (case, result.stderr)
    result = run_helm("template", RELEASE)  # no identity provider at all
    assert result.returncode != 0 and "issuer is required" in result.stderr


def test_an_upgrade_keeps_every_generated_secret(tmp_path):
    """`helm template` cannot reach a cluster, so Helm's `lookup` returns nothing there.
    On an upgrade it returns the Secret the install made; the test stands in for that by
    replacing the one template that calls `lookup` (templates/_lookup.tpl)."""
    first = named(render(CI["minimal"]), "Secret", "-secrets")
    again = named(render(CI["minimal"]), "Secret", "-secrets")
    upgraded = named(
        render(CI["minimal"], chart=with_lookup_returning(first, tmp_path)), "Secret", "-secrets"
    )
    values = secret_data(first)
    assert sorted(values) == sorted(GENERATED_KEYS)
    for key in GENERATED_KEYS:
        assert len(values[key]) == 64 and int(values[key], 16) >= 0  # 32 bytes, hex
        assert secret_data(again)[key] != values[key]  # a fresh install: fresh secrets
        assert secret_data(upgraded)[key] == values[key], key
    assert len(set(values.values())) == len(values)


def test_an_existing_secret_replaces_the_generated_one(rendered):
    objects = rendered["existing-secret"]
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-secrets")]
    refs = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for _, _, c in containers(objects)
        for env in c.get("env", [])
        if "valueFrom" in env
    }
    assert refs == {"aglais-secrets-from-vault"}


def test_the_hubs_service_account_may_do_what_the_spawner_does(rendered, tmp_path):
    # the per-user objects of the chart's own values, as the spawner makes them
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(hub_values(rendered["data"])))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aglais_hub.cli",
            "render-pod",
            str(values_file),
            "--user",
            "alice",
            "--groups",
            "gaia-users",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    spawn = [d for d in yaml.safe_load_all(result.stdout) if d]
    need = needed_rights(spawn)
    assert {
        ("", "pods"),
        ("", "persistentvolumeclaims"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    } <= set(need)
    for name, objects in rendered.items():
        (role,) = by_kind(objects, "ClusterRole")
        have = granted(role["rules"])
        for right, verbs in need.items():
            assert verbs <= have.get(right, set()), f"{name}: {right} lacks {verbs - have[right]}"
        extra = {r: v - need.get(r, set()) for r, v in have.items() if v - need.get(r, set())}
        assert not extra, f"{name}: granted but never used: {extra}"
        # Roles are created by holding their rights: no escalate, no bind, no secrets
        verbs = {v for rule in role["rules"] for v in rule["verbs"]}
        assert not verbs & {"escalate", "bind", "impersonate"}
        assert not any("secrets" in rule["resources"] for rule in role["rules"])
        (binding,) = by_kind(objects, "ClusterRoleBinding")
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "aglais-hub", "namespace": NAMESPACE}
        ]
        hub = named(objects, "Deployment", "-hub")["spec"]["template"]["spec"]
        assert hub["serviceAccountName"] == "aglais-hub"


def test_only_the_hub_gets_a_kubernetes_api_token(rendered):
    for name, objects in rendered.items():
        for workload, spec in pod_specs(objects):
            assert spec["automountServiceAccountToken"] is workload.endswith("-hub"), name


def listed(value) -> list:
    """A traitlets config list, set outright or appended to (a LazyConfigValue)."""
    return value.get_value([]) if hasattr(value, "get_value") else list(value)


def test_the_hub_accepts_the_values_file_the_chart_gives_it(rendered, tmp_path):
    for name, objects in rendered.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(hub_values(objects)))
        values = load_values(path)  # validates against the one schema, chart-only keys too
        c = hub_config(values)
        assert c.ConfigurableHTTPProxy.should_start is False, name
        assert c.ConfigurableHTTPProxy.api_url == "http://aglais-proxy-api.science.svc:8001"
        assert c.JupyterHub.hub_connect_url == "http://aglais-hub.science.svc:8081"
        assert c.JupyterHub.spawner_class == "spawners.zeppelin.spawner.ZeppelinSpawner"
        services = [s["name"] for s in listed(c.JupyterHub.services)]
        assert ("idle-culler" in services) is (name != "culler-off"), name
        if values["reservations"]["enabled"]:
            assert values["reservations"]["url"] == "http://aglais-reservations.science.svc:8090"


def test_hub_pod_reads_the_values_secret_and_keeps_sqlite_on_a_claim(rendered):
    objects = rendered["minimal"]
    hub = named(objects, "Deployment", "-hub")["spec"]["template"]["spec"]
    (container,) = hub["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AGLAIS_VALUES"]["value"] == "/etc/aglais/values.yaml"
    volumes = {v["name"]: v for v in hub["volumes"]}
    assert volumes["values"]["secret"]["secretName"] == "aglais-values"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "aglais-hub-db"
    assert container["workingDir"] == "/srv/jupyterhub"  # where sqlite:///jupyterhub.sqlite lands
    assert container["readinessProbe"]["httpGet"] == {"path": "/hub/health", "port": "http"}
    assert not by_kind(objects, "ConfigMap")
    # PostgreSQL: no claim (but the Git service's, for its working copies), the URL with its
    # password from the Secret
    production = rendered["production"]
    claims = [c["metadata"]["name"] for c in by_kind(production, "PersistentVolumeClaim")]
    assert claims == ["aglais-gitsync-data"]
    hub = named(production, "Deployment", "-hub")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in hub["containers"][0]["env"]}
    assert env["AGLAIS_HUB_DB_URL"]["valueFrom"]["secretKeyRef"]["key"] == "hub-db-url"
    assert hub["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/aglais/hub/health"


def test_proxy_sends_everything_to_the_hub_and_is_public_only_through_its_service(rendered):
    objects = rendered["production"]
    proxy = named(objects, "Deployment", "-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert "--default-target=http://aglais-hub.science.svc:8081" in proxy["command"]
    assert "--error-target=http://aglais-hub.science.svc:8081/aglais/hub/error" in proxy["command"]
    assert named(objects, "Service", "-proxy-api")["spec"]["type"] == "ClusterIP"
    public = named(objects, "Service", "-proxy-public")
    assert public["spec"]["ports"][0]["targetPort"] == "http"
    lb = named(rendered["culler-off"], "Service", "-proxy-public")["spec"]
    assert lb["type"] == "LoadBalancer" and lb["loadBalancerSourceRanges"] == ["192.0.2.0/24"]


def test_ingress_serves_tls_from_cert_manager_and_redirects_to_https(rendered):
    (ingress,) = by_kind(rendered["production"], "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["aglais.example.org"], "secretName": "aglais-tls"}]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "aglais.example.org"
    assert rule["http"]["paths"][0]["path"] == "/aglais/"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "aglais-proxy-public"
    assert hub_values(rendered["production"])["hub"]["publicUrl"] == "https://aglais.example.org"
    assert not by_kind(rendered["minimal"], "Ingress")


def test_reservation_service_runs_as_a_hub_service_with_its_own_database(rendered):
    objects = rendered["minimal"]
    deployment = named(objects, "Deployment", "-reservations")
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["aglais-hub", "reservations", "serve"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://aglais-hub.science.svc:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/services/reservations/"
    assert env["JUPYTERHUB_CLIENT_ID"] == "service-reservations"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/services/reservations/oauth_callback"
    assert env["AGLAIS_RESERVATIONS_IP"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/services/reservations/api/health"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/services/reservations/metrics"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "aglais-reservations-db"
    assert container["workingDir"] == "/srv/reservations"
    hub_env = named(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]
    tokens = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in hub_env["env"] if "valueFrom" in e
    }
    own = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in container["env"]
        if "valueFrom" in e
    }
    # the token the hub registers the service with is the one the service presents
    assert tokens["AGLAIS_RESERVATIONS_API_TOKEN"] == own["JUPYTERHUB_API_TOKEN"]
    assert tokens["AGLAIS_GATE_TOKEN"] == own["AGLAIS_GATE_TOKEN"]
    assert not [
        d
        for d in by_kind(rendered["existing-secret"], "Deployment")
        if d["metadata"]["name"].endswith("-reservations")
    ]


def test_culler_is_a_hub_service_with_a_narrow_role(rendered, tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(hub_values(rendered["minimal"])))
    values = load_values(path)
    found = culler_service(values, token="t" * 64, python="/usr/bin/python3")
    assert found["service"] == {
        "name": "idle-culler",
        "api_token": "t" * 64,
        "command": [
            "/usr/bin/python3",
            "-m",
            "jupyterhub_idle_culler",
            "--timeout=3600",
            "--cull-every=600",
            "--concurrency=10",
        ],
    }
    assert found["role"] == {
        "name": "idle-culler",
        "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    }
    assert SCOPES == found["role"]["scopes"]
    c2 = type(hub_config(values))()
    add_culler(c2, values, environ={"AGLAIS_CULLER_API_TOKEN": "secret-token"})
    (service,) = listed(c2.JupyterHub.services)
    assert service["api_token"] == "secret-token"
    assert listed(c2.JupyterHub.load_roles) == [found["role"]]
    # next to the hub's other services, and the same role there
    assert found["role"] in listed(hub_config(values).JupyterHub.load_roles)
    # off: no service at all
    off = type(c2)()
    add_culler(off, {**values, "culler": {**values["culler"], "enabled": False}}, {})
    assert "services" not in off.JupyterHub


def test_grafana_dashboard_shows_spawns_servers_bookings_capacity_and_queue(rendered):
    from aglais_hub.reservations import metrics

    (config_map,) = by_kind(rendered["production"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["aglais-hub.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "jupyterhub_server_spawn_duration_seconds",
        "jupyterhub_running_servers",
        "aglais_bookings",
        "aglais_capacity_booked",
        "aglais_capacity{",
        "aglais_queue_length",
    ):
        assert metric in exprs
    assert "aglais_benchmark_results" in exprs and "aglais_benchmark_notebook_seconds" in exprs
    # every reservation metric it plots is one the service exports (the benchmark's once a
    # nightly run has reported)
    metrics.BENCHMARK.summary = {
        "finished": "2026-12-02T02:00:00+00:00",
        "exit_status": 0,
        "counts": {"PASS": 1},
        "results": [{"user": "u", "notebook": "n.ipynb", "verdict": "PASS", "seconds": 1.0}],
    }
    try:
        exported = {m.name for m in metrics.REGISTRY.collect()}
    finally:
        metrics.BENCHMARK.summary = None
    plotted = {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"aglais_\w+", exprs)}
    assert plotted <= exported, plotted - exported


def notes(values: Path, tmp_path: Path) -> str:
    """NOTES.txt as `helm install` prints it (helm template does not render it)."""
    chart = with_lookup_returning({}, tmp_path)
    (chart / "templates" / "notes-for-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "aglais.notes" . | toJson }}}\n'
    )
    objects = render(values, chart=chart)
    return next(o for o in objects if o["metadata"]["name"] == "notes")["data"]["notes"]


def test_notes_tell_the_url_and_the_redirect_uri_to_register(tmp_path):
    text = notes(CI["production"], tmp_path / "p")
    assert "https://aglais.example.org/aglais/" in text
    assert "https://aglais.example.org/aglais/hub/oauth_callback" in text
    text = notes(CI["minimal"], tmp_path / "m")
    assert "port-forward service/aglais-proxy-public 8000:80" in text
    assert "http://127.0.0.1:8000/hub/oauth_callback" in text


DEV_VALUES = Path(__file__).resolve().parent.parent / "config" / "devcluster-chart-values.yaml"


def test_the_development_identity_provider_is_the_hubs_own_client_and_off_by_default(rendered):
    assert all(not o["metadata"]["name"].endswith("-idp") for o in rendered["minimal"])
    objects = render(DEV_VALUES, namespace="aglais")
    idp = named(objects, "Deployment", "-idp")["spec"]["template"]["spec"]
    (container,) = idp["containers"]
    assert container["command"] == ["node", "/srv/aglais/devidp/server.mjs"]
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["ISSUER"]["value"]
        == "http://aglais-idp.aglais.svc:5556"
        == yaml.safe_load(DEV_VALUES.read_text())["auth"]["issuer"]
    )
    assert (
        env["REDIRECT_URIS"]["value"] == "http://aglais-proxy-public.aglais.svc/hub/oauth_callback"
    )
    # one client secret, generated into the platform's Secret, for the provider and the hub
    assert env["CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "aglais-secrets",
        "key": "oauth-client-secret",
    }
    hub = named(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]
    hub_env = {e["name"]: e for e in hub["env"]}
    assert (
        hub_env["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "oauth-client-secret"
    )
    assert len(secret_data(named(objects, "Secret", "-secrets"))["oauth-client-secret"]) == 64
    users = json.loads(secret_data(named(objects, "Secret", "-idp-users"))["users.json"])
    assert users["alice"]["password"] == "alice" and "admins" in users["admin"]["groups"]
    assert named(objects, "Service", "-idp")["spec"]["ports"][0]["port"] == 5556


def test_the_development_identity_provider_refuses_an_issuer_that_is_not_its_own():
    with pytest.raises(
        RuntimeError,
        match=r"auth.issuer must be the development provider's "
        r"URL, http://aglais-idp.science.svc:5556 \(it is http://aglais-idp.aglais",
    ):
        render(DEV_VALUES)  # rendered into "science", the values name "aglais"
