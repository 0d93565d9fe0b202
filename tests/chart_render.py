"""Render the Helm chart with the real `helm`, for tests/test_chart.py."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from aglais_hub.chart import CHART, find_helm

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "aglais", "science"


def helm() -> str:
    found = find_helm()
    if not found:
        raise RuntimeError("helm is not on PATH: run `make helm` (it extracts one into .venv/bin)")
    return found


def run_helm(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args, str(chart)], capture_output=True, text=True)


def render(
    *values: Path, chart: Path = CHART, sets: tuple[str, ...] = (), namespace: str = NAMESPACE
) -> list[dict]:
    """Every object `helm template` makes (raises with helm's message if it fails)."""
    args = ["template", RELEASE, "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    result = run_helm(*args, chart=chart)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_lookup_returning(secret: dict, into: Path) -> Path:
    """A copy of the chart whose `lookup` of its Secret returns ``secret``, as Helm's
    `lookup` does against a cluster on upgrade (`helm template` never reaches one)."""
    chart = into / "aglais"
    shutil.copytree(CHART, chart)
    stub = yaml.safe_dump(secret)
    assert "`" not in stub  # a Go raw string literal
    (chart / "templates" / "_lookup.tpl").write_text(
        '{{- define "aglais.existingSecret" -}}{{- `' + stub + "` -}}{{- end -}}\n"
    )
    return chart


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict], kind: str, suffix: str) -> dict:
    (found,) = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return found


def secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def pod_specs(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(objects: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    """(workload name, pod spec, container) for every container of every workload."""
    for name, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield name, spec, container


def hub_values(objects: list[dict]) -> dict:
    """The values document the hub reads (from the values Secret)."""
    return yaml.safe_load(secret_data(named(objects, "Secret", "-values"))["values.yaml"])


def assert_locked_down(container: dict, user: int = 1000) -> None:
    """A chart container as containerSecurityContext makes it: not root, a read-only root
    file system, no privilege escalation, no capabilities, and resource requests."""
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == user
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
