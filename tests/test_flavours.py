"""The notebook flavour registry (aglais_hub.flavours).

Zeppelin's and JupyterLab's pods and messages are exactly what they were before the
registry; and a third flavour, registered in this file and nowhere else, is taken by
the values file, the pod, the spawn page, the testing cluster's node agent (which runs
it, and the auth proxy's readiness check passes) and the local spawner (which refuses
it, as a notebook without a hub login of its own).
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jupyterhub.spawner import SpawnException

from aglais_hub.config import ValuesError, load_values
from aglais_hub.flavours import (
    ENTRYPOINT,
    FLAVOURS,
    Flavour,
    LocalStart,
    UnknownFlavour,
    auto_flavour,
    flavour,
    register,
)
from aglais_hub.offering import offering_from_values
from aglais_hub.podproxy.app import ProxyState, starting_page, upstream_up
from aglais_hub.testing.nodeagent.images import ContainerContext, default_registry
from spawners.local_spark import LocalSparkSpawner, choose_notebook, local_start
from spawners.zeppelin import objects
from spawners.zeppelin.podstatus import friendly_event
from spawners.zeppelin.spec import kubernetes_settings

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "config" / "examples" / "kubernetes.yaml"
# objects.pod() for these, rendered by the code before the registry
GOLDEN = Path(__file__).parent / "golden" / "flavour_pods.yaml"
# case → (user, server, tier, size of config/examples/kubernetes.yaml)
CASES = {
    "zeppelin": ("alice", "", "standard", "small"),
    "jupyterlab": ("alice", "", "standard", "lab"),
    "zeppelin-named-server": ("bob", "big", "power", "large"),
    "jupyterlab-named-server": ("bob", "lab", "power", "lab"),
}

# The test-only flavour: Python's own file server, on the address the pod gives it.
STATIC = Flavour(
    name="static",
    title="The static file server",
    command=("python3", "-m", "http.server"),
    args=("--bind", "$(ZEPPELIN_ADDR)", "$(ZEPPELIN_PORT)"),
)


@pytest.fixture
def static():
    register(STATIC)
    yield STATIC
    del FLAVOURS[STATIC.name]


def pod_for(values: dict, user: str, server: str, tier: str, size_name: str) -> dict:
    """objects.pod() for one user's server of a size, as the spawner would build it."""
    offering = offering_from_values(values)
    size = offering.sizes[size_name]
    prefix = f"/user/{user}/{server + '/' if server else ''}"
    env = {
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_API_TOKEN": "<made by the hub at spawn time>",
    }
    suffix = f"--{server}" if server else ""
    spec = objects.ServerSpec(
        username=user,
        server_name=server,
        namespace=f"aglais-{user}",
        pod_name=f"zeppelin-{user}{suffix}",
        pvc_name=f"claim-{user}",
        tier=offering.tiers[tier],
        size=size.cluster,
        settings=kubernetes_settings(values),
        env=env,
        flavour=size.flavour,
        pod_labels={"hub.jupyter.org/network-access-hub": "true"},
        overhead=offering.overhead,
    )
    return objects.pod(spec)


def test_zeppelin_and_jupyterlab_pods_are_byte_for_byte_as_before_the_registry():
    values = load_values(VALUES)
    pods = {case: pod_for(values, *how) for case, how in CASES.items()}
    assert yaml.safe_dump(pods, sort_keys=False) == GOLDEN.read_text(), (
        f"a pod differs from {GOLDEN.name}: a flavour's pod must not change; a change of "
        "the pod that is not a flavour's rewrites the file (yaml.safe_dump, sort_keys=False)"
    )


def test_zeppelin_and_jupyterlab_messages_are_as_before():
    started = {
        name: friendly_event({"reason": "Started", "message": f"Started container {name}"})
        for name in ("zeppelin", "jupyterlab", "auth-proxy")
    }
    assert started == {
        "zeppelin": "Zeppelin is starting (its Java server takes up to a minute)",
        "jupyterlab": "JupyterLab is starting",
        "auth-proxy": "The door to your server (the hub login check) is open",
    }
    with pytest.raises(SpawnException) as refused:
        local_start(flavour("zeppelin"))
    assert refused.value.message == (
        "Zeppelin needs the Aglais auth proxy, which this hub does not run yet. "
        "Set spawner.localSpark.notebook to jupyterlab (or unset ZEPPELIN_HOME)."
    )
    spawner = LocalSparkSpawner(notebook="jupyterlab")
    assert spawner.cmd[1:] == ["-m", "jupyterhub.singleuser"]
    assert spawner.default_url == "/lab"


def test_an_unknown_flavour_is_an_error_naming_the_known_ones(tmp_path):
    with pytest.raises(UnknownFlavour, match=r"'emacs' \(flavours: zeppelin, jupyterlab\)"):
        flavour("emacs")
    values = yaml.safe_load(VALUES.read_text())
    values["sizes"]["lab"]["flavour"] = "emacs"
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(ValuesError) as error:
        load_values(tmp_path / "values.yaml")
    assert [str(p) for p in error.value.problems] == [
        "sizes.lab.flavour: must be one of 'zeppelin', 'jupyterlab', got 'emacs'"
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": "zeppelin", "container": "other"}, "'zeppelin' is already registered"),
        ({"container": "jupyterlab"}, "'jupyterlab' already has container 'jupyterlab'"),
        ({"container": "auth-proxy"}, "is the auth proxy's"),
        ({"name": "auto"}, "means 'choose one'"),
        ({"name": "Big Lab"}, "is not a DNS label"),
        ({"command": ()}, "has no command"),
        ({"stand_in": "nocolon"}, "is not 'module:function'"),
    ],
)
def test_a_flavour_that_cannot_be_told_apart_is_refused(changes, problem):
    fields = {"name": "other", "title": "Other", "command": ("true",), **changes}
    with pytest.raises(ValueError, match=re.escape(problem)):
        register(Flavour(**fields))
    assert list(FLAVOURS) == ["zeppelin", "jupyterlab"]


def test_the_entrypoint_has_a_branch_for_each_flavour_it_starts():
    script = (REPO / "images" / "zeppelin" / "entrypoint.sh").read_text()
    branches = set(re.findall(r"^    ([a-z][-a-z0-9]*)\)$", script, re.M))
    started = {f.args[0] for f in FLAVOURS.values() if f.command == (ENTRYPOINT,)}
    assert branches == started == {"zeppelin", "jupyterlab"}


def test_auto_is_zeppelin_where_installed_else_jupyterlab():
    assert auto_flavour({"ZEPPELIN_HOME": "/opt/zeppelin"}).name == "zeppelin"
    assert auto_flavour({}).name == "jupyterlab"
    assert choose_notebook("auto", {"ZEPPELIN_HOME": ""}) == "jupyterlab"
    assert choose_notebook("auto", {"ZEPPELIN_HOME": "/opt/zeppelin"}) == "zeppelin"


# ---- the third flavour: one registration (the fixture above) and nothing else ----


def test_a_registered_flavour_is_a_valid_size_flavour_and_notebook_setting(static, tmp_path):
    values = yaml.safe_load(VALUES.read_text())
    values["sizes"]["lab"]["flavour"] = "static"
    values["spawner"]["localSpark"] = {"notebook": "static"}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    loaded = load_values(tmp_path / "values.yaml")
    assert loaded["sizes"]["lab"]["flavour"] == "static"


def test_a_registered_flavour_renders_a_valid_pod(static):
    values = load_values(VALUES)
    values["sizes"]["lab"]["flavour"] = "static"
    pod = pod_for(values, "alice", "", "standard", "lab")
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
    proxy, notebook = pod["spec"]["containers"]
    assert proxy["name"] == "auth-proxy"
    assert notebook["name"] == "static"
    assert notebook["command"] == ["python3", "-m", "http.server"]
    assert notebook["args"] == ["--bind", "$(ZEPPELIN_ADDR)", "$(ZEPPELIN_PORT)"]
    assert {"name": "AGLAIS_FLAVOUR", "value": "static"} in notebook["env"]


def test_the_spawn_page_says_a_registered_flavour_is_starting(static):
    event = {"reason": "Started", "message": "Started container static"}
    assert friendly_event(event) == "The static file server is starting"


async def test_the_node_agent_runs_a_registered_flavour_and_the_proxy_finds_it_ready(
    static, tmp_path
):
    values = load_values(VALUES)
    values["sizes"]["lab"]["flavour"] = "static"
    pod = pod_for(values, "alice", "", "standard", "lab")
    notebook = pod["spec"]["containers"][1]
    home, conf = tmp_path / "home", tmp_path / "spark-conf"
    home.mkdir()
    conf.mkdir()
    (tmp_path / "pod").mkdir()
    env = {e["name"]: e["value"] for e in notebook["env"] if "value" in e}
    # a loopback address of its own, as the node agent gives each pod
    pod_ip = f"127.{random.randint(100, 250)}.{random.randint(0, 250)}.{random.randint(2, 250)}"
    ctx = ContainerContext(
        pod,
        notebook,
        pod_ip,
        env,
        {objects.HOME_MOUNT: home, objects.SPARK_CONF_DIR: conf},
        tmp_path / "pod",
    )
    command = default_registry().builder_for(notebook["image"])(ctx)
    assert command.argv[1:] == ["-m", "http.server", "--bind", pod_ip, "8080"]
    process = subprocess.Popen(
        command.argv,
        env=command.env,
        cwd=command.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = ProxyState(f"http://{pod_ip}:8080", env["ZEPPELIN_SERVER_CONTEXT_PATH"] + "/")
        deadline = time.monotonic() + 20
        while not await upstream_up(state):
            assert process.poll() is None, "the flavour's server exited"
            assert time.monotonic() < deadline, "the flavour's server never answered"
            await asyncio.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_local_spawner_refuses_a_flavour_without_a_hub_login(static):
    spawner = LocalSparkSpawner(notebook="static")
    assert spawner.notebook_flavour() is STATIC
    with pytest.raises(SpawnException) as refused:
        local_start(spawner.notebook_flavour())
    assert refused.value.message == (
        "The static file server needs the Aglais auth proxy, which this hub does not run "
        "yet. Set spawner.localSpark.notebook to jupyterlab."
    )


def test_a_local_start_is_what_the_local_spawner_runs(monkeypatch):
    lab = Flavour(
        name="lab",
        title="Lab",
        command=("true",),
        local=LocalStart("jupyterhub.singleuser", "/tree"),
    )
    monkeypatch.setitem(FLAVOURS, lab.name, lab)
    spawner = LocalSparkSpawner(notebook="lab")
    assert spawner.cmd[1:] == ["-m", "jupyterhub.singleuser"]
    assert spawner.default_url == "/tree"


def test_the_auth_proxy_says_which_notebook_is_starting():
    """A JupyterLab pod's auth proxy says JupyterLab is starting, not Zeppelin: the pod
    tells it the flavour's title, and its starting page and 503 answer use it."""
    values = load_values(VALUES)
    titles = {}
    for case, how in CASES.items():
        (proxy,) = [
            c for c in pod_for(values, *how)["spec"]["containers"] if c["name"] == "auth-proxy"
        ]
        titles[case] = proxy["args"][proxy["args"].index("--notebook") + 1]
    assert titles == {
        "zeppelin": "Zeppelin",
        "jupyterlab": "JupyterLab",
        "zeppelin-named-server": "Zeppelin",
        "jupyterlab-named-server": "JupyterLab",
    }
    page = starting_page("JupyterLab")
    assert "<h1>JupyterLab is starting</h1>" in page and "Zeppelin" not in page
    assert "<h1>A &lt;b&gt; is starting</h1>" in starting_page("A <b>")
