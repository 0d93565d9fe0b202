"""The nightly benchmark in the Helm chart (benchmark.*), rendered by the real `helm`:
off by default; on, a CronJob running `aglais-hub benchmark-nightly` against the release's
own proxy with the benchmark service's token from the Secret, its reports claim and its
NetworkPolicy; the hub's `benchmark` service whose role may make tokens for exactly the
listed users; and a values file that enables it without users is refused, by the chart's
schema and by check-config alike."""

from __future__ import annotations

import pytest
import yaml
from traitlets.config import Config, LazyConfigValue

from aglais_hub.config import ValuesError, apply_defaults, load_values
from aglais_hub.hubconfig import BENCHMARK, benchmark_service, benchmark_token_scopes, hub_config
from tests.chart_render import (
    CI_VALUES,
    NAMESPACE,
    assert_locked_down,
    by_kind,
    hub_values,
    named,
    render,
    run_helm,
)

CI = {path.name.removesuffix("-values.yaml"): path for path in CI_VALUES}
BENCHMARK_CI = CI["benchmark"]
USERS = ["benchmark-bot", "benchmark-power"]  # as chart/aglais/ci/benchmark-values.yaml


@pytest.fixture(scope="module")
def on() -> list[dict]:
    return render(BENCHMARK_CI)


def benchmark_objects(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["metadata"]["labels"].get("component") == "benchmark"]


def hub_side(objects: list[dict]) -> dict:
    """The values the hub reads (the values Secret), with the schema's defaults."""
    return apply_defaults(hub_values(objects))


def listed(config: Config, trait: str) -> list:
    """``c.JupyterHub.<trait>``, a list (empty when nothing appended to it)."""
    value = config.JupyterHub[trait]
    return value.get_value([]) if isinstance(value, LazyConfigValue) else list(value)


def cronjob_pod(objects: list[dict]) -> dict:
    (cronjob,) = by_kind(objects, "CronJob")
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]


def test_off_by_default_renders_no_benchmark_and_no_service():
    names = [n for n in CI if n != "benchmark"]
    assert names
    for name in names:
        objects = render(CI[name])
        assert benchmark_objects(objects) == [], name
        assert by_kind(objects, "CronJob") == [], name
        hub_env = {e["name"] for e in named(objects, "Deployment", "-hub")["spec"]["template"]
                   ["spec"]["containers"][0]["env"]}  # fmt: skip
        assert "AGLAIS_BENCHMARK_API_TOKEN" not in hub_env, name
        services = listed(hub_config(hub_side(objects)), "services")
        assert BENCHMARK not in [s["name"] for s in services], name


def test_on_renders_a_cronjob_one_at_a_time_with_history_and_a_deadline(on):
    (cronjob,) = by_kind(on, "CronJob")
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 1 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert {o["kind"] for o in benchmark_objects(on)} == {
        "CronJob",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    }


def test_the_job_runs_the_nightly_command_on_the_releases_own_proxy_as_the_listed_users(on):
    pod = cronjob_pod(on)
    (container,) = pod["spec"]["containers"]
    assert (
        container["image"]
        == named(on, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]["image"]
    )  # the hub image, which ships the example suite
    assert container["command"] == ["aglais-hub", "benchmark-nightly"]
    args = container["args"]
    proxy = named(on, "Service", "-proxy-public")
    port = proxy["spec"]["ports"][0]["port"]
    assert args[args.index("--hub") + 1] == (
        f"http://{proxy['metadata']['name']}.{NAMESPACE}.svc:{port}/"
    )
    assert [args[i + 1] for i, a in enumerate(args) if a == "--user"] == USERS
    assert args[args.index("--keep") + 1] == "7"
    assert args[args.index("--only") + 1 :] == ["07-library-versions.ipynb"]
    assert "--strict" in args and "--no-reservations" not in args
    # the token only from the Secret, never as an argument or a plain value
    (token,) = [e for e in container["env"] if e["name"] == "AGLAIS_BENCHMARK_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "aglais-secrets",
        "key": "benchmark-api-token",
    }
    assert not any("token" in str(a).lower() for a in args)
    secret = named(on, "Secret", "-secrets")
    assert "benchmark-api-token" in secret["data"]
    hub_env = named(on, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AGLAIS_BENCHMARK_API_TOKEN", "valueFrom": token["valueFrom"]} in hub_env


def test_the_job_keeps_its_reports_on_a_claim_and_follows_the_security_conventions(on):
    pod = cronjob_pod(on)["spec"]
    (container,) = pod["containers"]
    claim = named(on, "PersistentVolumeClaim", "-benchmark-reports")
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "standard"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    reports = container["args"][container["args"].index("--reports") + 1]
    assert (
        volumes[mounts[reports]]["persistentVolumeClaim"]["claimName"]
        == (claim["metadata"]["name"])
    )
    assert "emptyDir" in volumes[mounts["/tmp"]]  # a read-only root file system
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert_locked_down(container)


def test_network_policies_let_the_benchmark_reach_the_proxy_and_only_it(on):
    labels = cronjob_pod(on)["metadata"]["labels"]
    policies = [
        p
        for p in by_kind(on, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]
    (policy,) = policies
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    (to_proxy,) = [r for r in policy["spec"]["egress"] if "to" in r]
    assert to_proxy["ports"] == [{"protocol": "TCP", "port": 8000}]
    (peer,) = to_proxy["to"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "proxy"
    # the proxy lets in only proxyIngressFrom on its public port: and the benchmark
    proxy = named(on, "NetworkPolicy", "-proxy")
    sources = [
        peer
        for rule in proxy["spec"]["ingress"]
        if {"protocol": "TCP", "port": 8000} in rule["ports"]
        for peer in rule["from"]
    ]
    components = [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for p in sources
    ]
    assert components == [None, "benchmark"]  # ingress-nginx's namespace, then the job


def test_the_benchmark_service_may_make_tokens_for_exactly_the_listed_users(on):
    values = hub_side(on)
    assert values["benchmark"]["users"] == USERS
    config = hub_config(values, {"AGLAIS_BENCHMARK_API_TOKEN": "t0ken"})
    (service,) = [s for s in listed(config, "services") if s["name"] == BENCHMARK]
    assert service == {"name": BENCHMARK, "api_token": "t0ken"}  # no URL, no command
    (role,) = [r for r in listed(config, "load_roles") if BENCHMARK in r.get("services", [])]
    assert sorted(role["scopes"]) == sorted(
        ["tokens!user=benchmark-bot", "tokens!user=benchmark-power"]
        + ["access:services!service=reservations"]
    )
    assert not [s for s in role["scopes"] if "!" not in s and not s.startswith("access:")]
    # the tokens it asks for: one user's servers and nothing else of anyone's
    scopes = benchmark_token_scopes("benchmark-bot", reservations=True)
    assert all(s.endswith("!user=benchmark-bot") or s.startswith("access:services") for s in scopes)
    assert benchmark_token_scopes("x", reservations=False) == [
        "read:users!user=x",
        "servers!user=x",
        "access:servers!user=x",
    ]


def test_a_size_makes_each_user_book_it_and_must_be_offered(tmp_path):
    objects = render(
        BENCHMARK_CI, sets=("sizes.lab.executors=1", "sizes.lab.flavour=jupyterlab",
                            "benchmark.size=lab"),
    )  # fmt: skip
    args = cronjob_pod(objects)["spec"]["containers"][0]["args"]
    assert args[args.index("--size") + 1] == "lab"
    assert "--size" not in cronjob_pod(render(BENCHMARK_CI))["spec"]["containers"][0]["args"]
    values = tmp_path / "v.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "auth": {"issuer": "https://iam.example.org", "clientId": "aglais-hub"},
                "tiers": {"basic": {"rank": 0}},
                "sizes": {"small": {"executors": 1}},
                "benchmark": {"enabled": True, "users": ["a"], "size": "lab"},
            }
        )
    )
    with pytest.raises(ValuesError, match=r"benchmark\.size: unknown size 'lab' \(sizes: small\)"):
        load_values(values)


def test_without_the_reservation_service_the_job_sends_no_summary():
    objects = render(BENCHMARK_CI, sets=("reservations.enabled=false",))
    assert "--no-reservations" in cronjob_pod(objects)["spec"]["containers"][0]["args"]
    found = benchmark_service(hub_side(objects), {})
    assert found["role"]["scopes"] == [f"tokens!user={u}" for u in USERS]


def test_enabled_without_users_is_refused_by_the_chart_and_by_check_config(tmp_path):
    values = tmp_path / "no-users.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "auth": {"issuer": "https://iam.example.org", "clientId": "aglais-hub"},
                "benchmark": {"enabled": True},
            }
        )
    )
    result = run_helm("template", "aglais", "--namespace", NAMESPACE, "--values", str(values))
    assert result.returncode != 0
    assert "benchmark" in result.stderr and "users" in result.stderr, result.stderr
    hub_side = tmp_path / "hub.yaml"
    hub_side.write_text(
        yaml.safe_dump(
            {
                "auth": {"issuer": "https://iam.example.org", "clientId": "aglais-hub"},
                "tiers": {"basic": {"rank": 0}},
                "benchmark": {"enabled": True, "users": []},
            }
        )
    )
    with pytest.raises(ValuesError) as refused:
        load_values(hub_side)
    assert [str(p) for p in refused.value.problems] == [
        "benchmark.users: must not be empty: name at least one hub user for the benchmark "
        "to run as (benchmark.enabled is true)"
    ]
    # off, no users is fine; a user name the hub could not have is refused
    hub_side.write_text(hub_side.read_text().replace("enabled: true", "enabled: false"))
    assert load_values(hub_side)["benchmark"]["enabled"] is False
    hub_side.write_text(hub_side.read_text().replace("users: []", "users: [Bob Smith]"))
    with pytest.raises(ValuesError, match=r"benchmark\.users\[0\]: 'Bob Smith' is not valid"):
        load_values(hub_side)
