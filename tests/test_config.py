"""The values model: validation messages name the key path; defaults; traitlets mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aglais_hub.cli import main
from aglais_hub.config import apply_defaults, load_values, validate
from aglais_hub.config.reference import replace_reference
from aglais_hub.hubconfig import callback_url, hub_config

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {
    "auth": {"issuer": "https://id.example.org", "clientId": "hub"},
    "tiers": {"basic": {"rank": 0}},
}


def check(tmp_path: Path, capsys: pytest.CaptureFixture, values: object) -> tuple[int, str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


GAIA_VOLUME = {
    "name": "gaia-dr3",
    "mountPath": "/data/gaia-dr3",
    "source": {"csi": {"driver": "d"}},
}
GAIA = {"kubernetes": {"dataVolumes": [GAIA_VOLUME]}}
NFS = {"name": "dr2", "mountPath": "/data/dr2", "source": {"nfs": {"server": "s", "path": "/x"}}}
HOST = {"name": "dr2", "mountPath": "/data/dr2", "source": {"hostPath": {"path": "/x"}}}


def with_changes(**sections: dict) -> dict:
    values = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for name, change in sections.items():
        values.setdefault(name, {}).update(change)
    return values


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # a wrong type, with the key path and what was given
        (
            with_changes(auth={"adminGroups": "admins"}),
            "auth.adminGroups: expected a list of strings, got 'admins'",
        ),
        (with_changes(hub={"port": "8000"}), "hub.port: expected an integer, got '8000'"),
        (
            with_changes(tiers={"basic": {"rank": 0, "maxExecutors": "many"}}),
            "tiers.basic.maxExecutors: expected an integer, got 'many'",
        ),
        # an unknown key, with a suggestion when one is close
        (
            with_changes(auth={"clientID": "x"}),
            "auth.clientID: unknown key (did you mean 'clientId'?)",
        ),
        (
            with_changes(hub={"flavour": 1}),
            "hub.flavour: unknown key; known keys: allowNamedServers",
        ),
        ({**MINIMAL, "spawnr": {}}, "spawnr: unknown key (did you mean 'spawner'?)"),
        # a missing required key
        ({"tiers": MINIMAL["tiers"]}, "auth: required key is missing"),
        (
            {"auth": {"issuer": "https://x"}, "tiers": MINIMAL["tiers"]},
            "auth.clientId: required key is missing",
        ),
        (with_changes(tiers={"gold": {}}), "tiers.gold.rank: required key is missing"),
        # values that break a rule
        (
            with_changes(auth={"issuer": "id.example.org"}),
            "auth.issuer: 'id.example.org' is not valid: must be an http",
        ),
        (
            with_changes(tiers={"basic": {"rank": 0, "storage": "10GB"}}),
            "tiers.basic.storage: '10GB' is not valid: expected a Kubernetes quantity",
        ),
        (
            with_changes(spawner={"kind": "docker"}),
            "spawner.kind: must be one of 'local-spark', 'zeppelin', got 'docker'",
        ),
        (
            with_changes(auth={"defaultTier": "gold"}),
            "auth.defaultTier: unknown tier 'gold' (tiers: basic)",
        ),
        (
            with_changes(auth={"tierGroups": {"vip": "gold"}}),
            "auth.tierGroups.vip: unknown tier 'gold'",
        ),
        (
            with_changes(tiers={"basic": {"rank": 0}, "more": {"rank": 0}}),
            "tiers.more.rank: rank 0 is already used by tier 'basic'",
        ),
        # the catalogues must be where a notebook pod sees them
        (
            with_changes(spawner={"kind": "zeppelin", "catalogues": "/data/gaia"}),
            "spawner.catalogues: '/data/gaia' is not at or under a mountPath of "
            "spawner.kubernetes.dataVolumes (none is set)",
        ),
        (
            with_changes(spawner={"kind": "zeppelin", "catalogues": "/data/gaia-dr3x", **GAIA}),
            "(/data/gaia-dr3): notebook pods would not see it",
        ),
        # a data volume the users' Pod Security level refuses
        (
            with_changes(spawner={"kind": "zeppelin", "kubernetes": {"dataVolumes": [NFS]}}),
            "spawner.kubernetes.dataVolumes[0].source: a nfs volume is refused by Pod "
            "Security 'restricted'",
        ),
        (
            with_changes(
                spawner={
                    "kind": "zeppelin",
                    "kubernetes": {"podSecurity": "baseline", "dataVolumes": [HOST]},
                }
            ),
            "a hostPath volume is refused by Pod Security 'baseline'",
        ),
    ],
)
def test_check_config_names_the_key_and_the_problem(tmp_path, capsys, values, expected):
    code, output = check(tmp_path, capsys, values)
    assert code == 1
    assert expected in output


@pytest.mark.parametrize(
    "spawner",
    [
        {"kind": "zeppelin", "catalogues": "/data/gaia-dr3", **GAIA},
        {"kind": "zeppelin", "catalogues": "/data/gaia-dr3/sample", **GAIA},
        {"kind": "zeppelin", "kubernetes": {"podSecurity": "baseline", "dataVolumes": [NFS]}},
        {"kind": "zeppelin", "kubernetes": {"podSecurity": "privileged", "dataVolumes": [HOST]}},
        {"kind": "local-spark", "catalogues": "anywhere/on/the/hub"},
    ],
)
def test_catalogues_and_data_volumes_that_pods_can_see_are_accepted(spawner):
    assert validate(apply_defaults(with_changes(spawner=spawner))) == []


def test_check_config_reports_every_problem_at_once(tmp_path, capsys):
    values = with_changes(auth={"adminGroups": "admins", "bogus": True}, hub={"port": -1})
    code, output = check(tmp_path, capsys, values)
    assert code == 1
    assert "3 problem(s)" in output
    for path in ("auth.adminGroups:", "auth.bogus:", "hub.port: must be at least 1"):
        assert path in output


def test_check_config_accepts_the_shipped_files(capsys):
    assert main(["check-config", str(REPO / "config" / "demo.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_on_missing_and_malformed_files(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 1
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("auth: [unclosed\n")
    assert main(["check-config", str(bad)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_defaults_fill_every_section_without_overriding_given_values():
    values = apply_defaults(with_changes(auth={"scopes": ["openid"]}))
    assert values["hub"]["port"] == 8000
    assert values["hub"]["db"]["url"] == "sqlite:///jupyterhub.sqlite"
    assert values["auth"]["scopes"] == ["openid"]
    assert values["auth"]["usernameClaim"] == "preferred_username"
    assert values["tiers"]["basic"]["storage"] == "1Gi"
    assert values["spawner"]["localSpark"]["dataDir"] == "data"
    assert validate(values) == []


def test_values_map_onto_traitlets(tmp_path):
    path = tmp_path / "values.yaml"
    values = with_changes(
        hub={
            "publicUrl": "https://hub.example.org/",
            "baseUrl": "/aglais/",
            "config": {"JupyterHub": {"port": 9999}, "LocalSparkSpawner": {"max_cores": 3}},
        },
        auth={"adminGroups": ["admins"], "tierGroups": {"power": "basic"}},
    )
    path.write_text(yaml.safe_dump(values))
    c = hub_config(load_values(path))
    assert c.JupyterHub.spawner_class == "spawners.local_spark.LocalSparkSpawner"
    assert c.JupyterHub.authenticator_class == "authenticators.aglais.AglaisOAuthenticator"
    assert c.AglaisOAuthenticator.issuer == "https://id.example.org"
    assert c.AglaisOAuthenticator.admin_groups == {"admins"}
    assert c.AglaisOAuthenticator.tier_ranks == {"basic": 0}
    assert c.AglaisOAuthenticator.oauth_callback_url == (
        "https://hub.example.org/aglais/hub/oauth_callback"
    )
    assert c.LocalSparkSpawner.offering.tiers["basic"].driver_memory == 2**30
    # the pass-through wins over the mapped values
    assert c.JupyterHub.port == 9999
    assert c.LocalSparkSpawner.max_cores == 3


def test_callback_url_defaults_to_the_public_address():
    hub = apply_defaults(MINIMAL)["hub"]
    assert callback_url(hub) == "http://127.0.0.1:8000/hub/oauth_callback"


def test_a_public_url_reaches_the_hub_and_its_servers():
    values = apply_defaults(MINIMAL)
    assert "public_url" not in hub_config(values).JupyterHub  # empty: JupyterHub detects it
    values["hub"].update(publicUrl="https://hub.example.org/", baseUrl="/aglais/")
    assert hub_config(values).JupyterHub.public_url == "https://hub.example.org/aglais/"


def test_readme_values_reference_is_generated_from_the_schema():
    readme = (REPO / "README.md").read_text()
    assert replace_reference(readme) == readme, "README is stale: run `make docs`"
    assert "`auth.groupsClaim`" in readme
