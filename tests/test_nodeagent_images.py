"""The node agent's image registry without a cluster: how the notebook image's Spark
configuration is made to reach the API server as the pod's ServiceAccount, and the
test images (unpullable, crashing, slow) every agent knows."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from aglais_hub.testing.nodeagent.images import (
    SERVICE_ACCOUNT_DIR,
    ContainerContext,
    aglais_notebook,
    crashing,
    default_registry,
    slow_notebook,
    spark_api_properties,
    zeppelin_standin,
)

API = {"KUBERNETES_SERVICE_HOST": "127.0.0.5", "KUBERNETES_SERVICE_PORT": "6443"}


def _token(sub: str) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{claims}.signature"


def notebook(
    tmp_path: Path,
    args: list[str],
    token: bool = True,
    command: tuple[str, ...] = ("/opt/aglais/entrypoint.sh",),
) -> ContainerContext:
    """The notebook container of a Zeppelin pod, its volumes as host directories."""
    conf, account = tmp_path / "spark-conf", tmp_path / "sa"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text(
        "# written by the hub\n"
        "spark.master k8s://https://kubernetes.default.svc:443\n"
        "spark.kubernetes.executor.podTemplateFile /opt/spark/conf/executor-pod-template.yaml\n"
        "spark.driver.host zeppelin-alice-driver.aglais-alice.svc\n"
    )
    mounts = {"/opt/spark/conf": conf}
    if token:
        account.mkdir(exist_ok=True)
        (account / "token").write_text(_token("system:serviceaccount:aglais-alice:spark-driver"))
        (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
        mounts[SERVICE_ACCOUNT_DIR] = account
    container = {
        "name": "zeppelin",
        "image": "ghcr.io/aglais/zeppelin:1.0",
        "command": list(command),
        "args": args,
    }
    env = {**API, "SPARK_CONF_DIR": "/opt/spark/conf", "HOME": str(tmp_path)}
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir(exist_ok=True)
    return ContainerContext(
        {"metadata": {"name": "zeppelin-alice"}}, container, "127.10.0.2", env, mounts, pod_dir
    )


def written_conf(ctx: ContainerContext) -> dict[str, str]:
    command = zeppelin_standin(ctx)
    text = (Path(command.env["SPARK_CONF_DIR"]) / "spark-defaults.conf").read_text()
    return dict(line.split(" ", 1) for line in text.splitlines())


def test_with_the_token_mounted_spark_uses_https_and_the_containers_own_token(tmp_path):
    ctx = notebook(tmp_path, ["zeppelin"])
    conf = written_conf(ctx)
    account = tmp_path / "sa"
    assert conf["spark.master"] == "k8s://https://127.0.0.5:6443"
    assert conf["spark.kubernetes.authenticate.caCertFile"] == str(account / "ca.crt")
    assert conf["spark.kubernetes.authenticate.oauthTokenFile"] == str(account / "token")
    # container paths under a mount point at the host directory; the driver at the pod IP
    template = conf["spark.kubernetes.executor.podTemplateFile"]
    assert template == str(tmp_path / "spark-conf" / "executor-pod-template.yaml")
    assert conf["spark.driver.host"] == "127.10.0.2"
    # never a kubeconfig of this machine (the admin's): fabric8 finds none
    kubeconfig = Path(zeppelin_standin(ctx).env["KUBECONFIG"])
    assert not kubeconfig.exists()


def test_without_a_token_spark_has_no_credentials_to_present(tmp_path):
    conf = written_conf(notebook(tmp_path, ["zeppelin"], token=False))
    assert conf["spark.master"] == "k8s://https://127.0.0.5:6443"
    assert not any(key.startswith("spark.kubernetes.authenticate.") for key in conf)
    assert spark_api_properties(notebook(tmp_path, ["zeppelin"], token=False)) == {
        "spark.master": "k8s://https://127.0.0.5:6443"
    }


def test_the_auth_proxy_is_told_where_its_token_is(tmp_path):
    ctx = notebook(tmp_path, ["--port", "8888"], command=("aglais-podproxy",))
    command = aglais_notebook(ctx)
    assert command.argv[1:3] == ["-m", "aglais_hub.podproxy"]
    assert command.env["AGLAIS_SERVICE_ACCOUNT_DIR"] == str(tmp_path / "sa")
    bare = notebook(tmp_path / "x", ["--port", "8888"], token=False, command=("aglais-podproxy",))
    assert "AGLAIS_SERVICE_ACCOUNT_DIR" not in aglais_notebook(bare).env


def test_the_test_images_are_known_by_their_tags():
    registry = default_registry()
    assert "not found" in registry.pull_error("ghcr.io/aglais/zeppelin:unpullable")
    assert registry.pull_error("ghcr.io/aglais/spark:unpullable")
    assert registry.pull_error("ghcr.io/aglais/zeppelin:1.0") is None
    assert registry.builder_for("ghcr.io/aglais/spark:crashing") is crashing
    assert registry.builder_for("ghcr.io/aglais/zeppelin:crashing") is crashing
    assert registry.builder_for("ghcr.io/aglais/zeppelin:slow") is slow_notebook
    assert registry.builder_for("ghcr.io/aglais/zeppelin:1.0") is aglais_notebook


def test_a_slow_notebook_delays_zeppelin_but_not_its_auth_proxy(tmp_path):
    zeppelin = slow_notebook(notebook(tmp_path, ["zeppelin"]))
    assert zeppelin.argv[:3] == ["/bin/sh", "-c", 'sleep 6; exec "$@"']
    assert zeppelin.argv[-2:] == ["-m", "aglais_hub.testing.zeppelin_standin"]
    proxy = slow_notebook(notebook(tmp_path, ["--port", "8888"], command=("aglais-podproxy",)))
    assert proxy.argv[1:3] == ["-m", "aglais_hub.podproxy"]


def test_a_crashing_image_exits_1_at_once(tmp_path):
    ctx = notebook(tmp_path, [])
    command = crashing(ctx)
    done = subprocess.run(command.argv, env=command.env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "crashed at start" in done.stdout


def test_the_hub_images_files_are_where_the_dockerfile_puts_them():
    """HUB_IMAGE_FILES (image path → repo path) says what images/hub/Dockerfile copies
    where: each image path is made by the Dockerfile from that repo path."""
    from aglais_hub.testing.nodeagent.images import HUB_IMAGE_FILES, REPO

    dockerfile = (REPO / "images" / "hub" / "Dockerfile").read_text()
    assert "WORKDIR /srv/aglais" in dockerfile
    assert len(HUB_IMAGE_FILES) == 3
    for image_path, repo_path in HUB_IMAGE_FILES.items():
        assert repo_path.exists(), repo_path
        relative = repo_path.relative_to(REPO).as_posix()
        if relative == "node_modules":  # `npm ci` in WORKDIR /srv/aglais
            assert "RUN npm ci" in dockerfile and image_path == "/srv/aglais/node_modules"
            continue
        assert f"/src/aglais-hub/{relative} " in dockerfile, relative  # cp SOURCE DEST
        destination = dockerfile.split(f"/src/aglais-hub/{relative} ", 1)[1].split()[0]
        assert image_path in (destination, destination.rstrip("/") + "/" + Path(relative).name)


def test_the_hub_image_runs_the_manifests_command_with_its_token_as_a_kubeconfig(tmp_path):
    from aglais_hub.testing.nodeagent.images import REPO, hub_image

    account, values, data = tmp_path / "sa", tmp_path / "values", tmp_path / "data"
    for directory in (account, values, data):
        directory.mkdir()
    (account / "token").write_text(_token("system:serviceaccount:aglais:aglais-hub"))
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    container = {
        "name": "hub",
        "image": "ghcr.io/aglais/hub:0.1.0",
        "command": ["jupyterhub", "-f", "/srv/aglais/jupyterhub_config.py"],
        "workingDir": "/srv/jupyterhub",
    }
    env = {**API, "AGLAIS_VALUES": "/etc/aglais/values.yaml", "AGLAIS_RESERVATIONS_IP": "0.0.0.0"}
    mounts = {SERVICE_ACCOUNT_DIR: account, "/etc/aglais": values, "/srv/jupyterhub": data}
    pod = {"metadata": {"name": "aglais-hub-1", "namespace": "aglais"}}
    ctx = ContainerContext(pod, container, "127.10.0.7", env, mounts, tmp_path)
    command = hub_image(ctx)
    assert command.argv[0].endswith("/jupyterhub") and Path(command.argv[0]).exists()
    assert command.argv[1:] == ["-f", str(REPO / "config" / "jupyterhub_config.py")]
    assert command.cwd == data
    assert command.env["AGLAIS_VALUES"] == str(values / "values.yaml")
    assert command.env["AGLAIS_RESERVATIONS_IP"] == "127.10.0.7"  # all addresses: the pod's
    kubeconfig = json.loads(Path(command.env["KUBECONFIG"]).read_text())
    assert kubeconfig["users"][0]["user"] == {"tokenFile": str(account / "token")}
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.5:6443"
    assert kubeconfig["contexts"][0]["context"]["namespace"] == "aglais"
