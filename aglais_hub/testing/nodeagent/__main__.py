"""``python -m aglais_hub.testing.nodeagent``: one node agent, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import urllib.parse
from pathlib import Path

from ..signalled import run_until_signalled
from .agent import NodeAgent
from .client import ApiClient
from .images import default_registry
from .node import NodeSpec


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aglais_hub.testing.nodeagent", description=__doc__
    )
    parser.add_argument("--kubeconfig", required=True, help="a system:node:<name> kubeconfig")
    parser.add_argument("--name", required=True, help="the Node's name")
    parser.add_argument("--root", required=True, type=Path, help="pod directories go here")
    parser.add_argument("--shared-dir", type=Path, help="csi/nfs volumes (default: ROOT/shared)")
    parser.add_argument(
        "--ip-prefix", type=int, default=10, help="the node is 127.N.0.1 and its pods 127.N.x.y"
    )
    parser.add_argument("--cluster-id", default="aglais", help="marks the pods' processes")
    parser.add_argument("--cpu", default="8")
    parser.add_argument("--memory", default="32Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATTERN=MODULE:FUNC",
        help="map more images to command builders (first wins)",
    )
    parser.add_argument(
        "--dns-file",
        type=Path,
        help="the service proxy's DNS file: pod processes resolve Service "
        "names from it (aglais_hub.testing.clusterdns)",
    )
    parser.add_argument(
        "--client-ca",
        type=Path,
        help="serve the kubelet API (kubectl logs) to clients this CA signed",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    registry = default_registry()
    for rule in args.image:
        pattern, _, target = rule.partition("=")
        module, _, function = target.partition(":")
        registry.register(pattern, getattr(importlib.import_module(module), function))
    client = ApiClient.from_kubeconfig(args.kubeconfig, f"aglais-nodeagent/{args.name}")
    server = urllib.parse.urlsplit(client.server)
    spec = NodeSpec(args.name, f"127.{args.ip_prefix}.0.1", args.cpu, args.memory, args.pods)
    agent = NodeAgent(
        client,
        spec,
        args.root,
        shared_dir=args.shared_dir or args.root / "shared",
        api_host=server.hostname,
        api_port=server.port or 443,
        registry=registry,
        cluster_id=args.cluster_id,
        ip_prefix=args.ip_prefix,
        dns_file=args.dns_file,
        client_ca=args.client_ca,
    )
    await run_until_signalled(agent.run(), agent.stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args.root.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
