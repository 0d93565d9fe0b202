"""Is the testing cluster fast enough not to be the bottleneck of spawn benchmarks?

Runs two servers side by side, each in its own process, with the same client load:

- fake: the testing cluster (`aglais-hub fake-cluster`), with scheduler and kubelet
  (inert containers), controllers, admission and events: everything a spawn costs;
- baseline: a minimal aiohttp server with the same paths that only keeps a dict and
  broadcasts watch lines, i.e. the floor of HTTP + JSON on this machine.

Figures: pod create+get+delete cycles per second (CONCURRENCY clients), and a watch
fan-out: WATCHERS watches open on a namespace while PODS pods are created; time until
every watcher has seen every pod's ADDED event. Prints each figure and fake/baseline.

    .venv/bin/python bench/fakecluster.py [--cycles 600] [--watchers 200] [--pods 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time

import aiohttp
from aiohttp import web

CONCURRENCY = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"b": "1"}},
        "spec": {
            "containers": [{"name": "c", "image": "inert/bench"}],
            "terminationGracePeriodSeconds": 0,
        },
    }


# -- the two servers ----------------------------------------------------------------------------


def run_baseline(port: int) -> None:
    pods: dict[str, dict] = {}
    streams: list[web.StreamResponse] = []
    version = [0]

    async def broadcast(kind: str, obj: dict) -> None:
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        for s in list(streams):
            try:
                await s.write(line)
            except ConnectionResetError:
                streams.remove(s)

    async def collection(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            obj = await request.json()
            version[0] += 1
            obj["metadata"]["resourceVersion"] = str(version[0])
            pods[obj["metadata"]["name"]] = obj
            await broadcast("ADDED", obj)
            return web.json_response(obj, status=201)
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            streams.append(response)
            await asyncio.Event().wait()
        return web.json_response({"items": list(pods.values())})

    async def item(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in pods:
            return web.json_response({"code": 404}, status=404)
        if request.method == "DELETE":
            obj = pods.pop(name)
            await broadcast("DELETED", obj)
            return web.json_response(obj)
        return web.json_response(pods[name])

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods", collection)
    app.router.add_route("*", "/api/v1/namespaces/{ns}/pods/{name}", item)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_fake(port: int) -> None:
    from aglais_hub.testing.fakecluster import FakeCluster

    async def serve() -> None:
        cluster = FakeCluster(port=port, nodes=4, node_cpu="1000", node_memory="1Ti")
        await cluster.start()
        cluster.kubelet.nodes  # noqa: B018 - nodes are registered by start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_server(target, port: int) -> multiprocessing.Process:  # noqa: ANN001
    process = multiprocessing.Process(target=target, args=(port,), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    raise RuntimeError("server did not start")


# -- the load -----------------------------------------------------------------------------------


async def cycles(url: str, total: int) -> tuple[float, list[float]]:
    """create + get + delete of ``total`` pods by CONCURRENCY clients; cycles/s, latencies."""
    latencies: list[float] = []
    names = iter(range(total))
    base = f"{url}/api/v1/namespaces/default/pods"

    async def client(session: aiohttp.ClientSession) -> None:
        for i in names:
            started = time.perf_counter()
            async with session.post(base, json=pod(f"c{i}")) as r:
                assert r.status == 201, await r.text()
            async with session.get(f"{base}/c{i}") as r:
                assert r.status == 200
            async with session.delete(f"{base}/c{i}") as r:
                assert r.status == 200, await r.text()
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession() as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(CONCURRENCY)))
        return total / (time.perf_counter() - began), latencies


async def fan_out(url: str, watchers: int, pods: int, namespace: str) -> float:
    """Seconds from the first create until every watcher has seen every ADDED event."""
    base = f"{url}/api/v1/namespaces/{namespace}/pods"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        ready = asyncio.Semaphore(0)

        async def watch() -> None:
            seen: set[str] = set()
            async with session.get(
                base,
                params={"watch": "true", "resourceVersion": "1" if "fake" in namespace else "0"},
            ) as r:
                ready.release()
                async for line in r.content:
                    event = json.loads(line)
                    if event["type"] == "ADDED":
                        seen.add(event["object"]["metadata"]["name"])
                        if len(seen) == pods:
                            return

        tasks = [asyncio.ensure_future(watch()) for _ in range(watchers)]
        for _ in range(watchers):
            await ready.acquire()
        began = time.perf_counter()
        names = iter(range(pods))

        async def creator() -> None:
            for i in names:
                async with session.post(base, json=pod(f"w{i}")) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - began


async def measure(url: str, namespace: str, args: argparse.Namespace) -> dict:
    if namespace.startswith("fake"):
        async with aiohttp.ClientSession() as s:
            await s.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": namespace}})
    rate, latencies = await cycles(url, args.cycles)
    seconds = await fan_out(url, args.watchers, args.pods, namespace)
    return {
        "cycles_per_s": rate,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": statistics.quantiles(latencies, n=20)[18] * 1000,
        "fan_out_s": seconds,
        "events_per_s": args.watchers * args.pods / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=600)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--pods", type=int, default=1000)
    args = parser.parse_args()
    results = {}
    for name, target in (("baseline", run_baseline), ("fake", run_fake)):
        port = free_port()
        server = start_server(target, port)
        try:
            results[name] = asyncio.run(measure(f"http://127.0.0.1:{port}", f"{name}-bench", args))
        finally:
            server.kill()
            server.join(10)
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{CONCURRENCY} concurrent clients; {args.watchers} watchers x {args.pods} pods"
    )
    print(f"{'figure':<34}{'baseline':>12}{'fake':>12}{'fake/baseline':>15}")
    rows = [
        ("pod create+get+delete cycles/s", "cycles_per_s"),
        ("cycle latency p50 (ms)", "p50_ms"),
        ("cycle latency p95 (ms)", "p95_ms"),
        ("watch fan-out time (s)", "fan_out_s"),
        ("watch events delivered/s", "events_per_s"),
    ]
    for label, key in rows:
        b, f = results["baseline"][key], results["fake"][key]
        print(f"{label:<34}{b:>12.1f}{f:>12.1f}{f / b:>15.2f}")


if __name__ == "__main__":
    main()
