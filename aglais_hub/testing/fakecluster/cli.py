"""`aglais-hub fake-cluster`: run the testing cluster in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from . import FakeCluster


def parse_fault(text: str) -> tuple[str, str, int, int]:
    """``VERB:RESOURCE:STATUS[:COUNT]``, e.g. ``create:pods:500:2``."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError("expected VERB:RESOURCE:STATUS[:COUNT]")
    try:
        return parts[0], parts[1], int(parts[2]), int(parts[3]) if len(parts) == 4 else 1
    except ValueError:
        raise argparse.ArgumentTypeError("STATUS and COUNT are numbers") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--nodes", type=int, default=2, help="simulated nodes")
    parser.add_argument("--node-cpu", default="4", help="allocatable cpu per node")
    parser.add_argument("--node-memory", default="8Gi", help="allocatable memory per node")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the cluster here")
    parser.add_argument("--root", type=Path, help="directory for pod and volume data")
    parser.add_argument(
        "--fail",
        type=parse_fault,
        action="append",
        default=[],
        metavar="VERB:RESOURCE:STATUS[:COUNT]",
        help="inject failing requests",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to requests")
    parser.add_argument(
        "--image-fault",
        action="append",
        default=[],
        metavar="PATTERN:MODE",
        help="pods with a matching image fail to start (MODE: pull or crash)",
    )


async def serve(args: argparse.Namespace) -> None:
    cluster = FakeCluster(
        port=args.port,
        nodes=args.nodes,
        node_cpu=args.node_cpu,
        node_memory=args.node_memory,
        root=args.root,
    )
    await cluster.start()
    for verb, resource, status, count in args.fail:
        cluster.fail(verb, resource, status, count)
    cluster.faults.latency = args.latency
    for spec in args.image_fault:
        pattern, _, mode = spec.rpartition(":")
        cluster.fail_image(pattern, mode)
    if args.kubeconfig:
        cluster.write_kubeconfig(args.kubeconfig)
    print(f"Testing cluster serving the Kubernetes API at {cluster.url}", flush=True)
    if args.kubeconfig:
        print(f"kubeconfig: {args.kubeconfig}  (export KUBECONFIG={args.kubeconfig})", flush=True)
    print(f"pod and volume data: {cluster.root}\nPress Ctrl-C to stop.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await cluster.stop()


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args))
    return 0
