"""Readiness probes, as a kubelet runs them (ours): httpGet and tcpSocket against the
pod's own address, exec as a local command in the container's environment. Periods are
capped (``PROBE_PERIOD_CAP``, and 0.5 s until first ready)
so tests need not wait 10 s.
Not done: liveness and startup probes (no restarts on their failure), gRPC probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from .images import ContainerContext

PROBE_PERIOD_CAP = 2.0  # seconds: no probe waits its full period (often 10 s) here
FIRST_READY_PERIOD = 0.5


def port_number(container: dict, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    return 0


async def probe_once(probe: dict, ctx: ContainerContext) -> tuple[bool, str]:
    """(passed, why not)."""
    timeout = probe.get("timeoutSeconds", 1)
    container, ip = ctx.container, ctx.pod_ip
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host = get.get("host") or ip
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://{host}:{port_number(container, get['port'])}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            limit = aiohttp.ClientTimeout(total=timeout)
            async with aiohttp.ClientSession(timeout=limit) as session:
                async with session.get(
                    url, headers=headers, allow_redirects=False, ssl=False
                ) as answer:
                    if 200 <= answer.status < 400:
                        return True, ""
                    return False, f"HTTP probe failed with statuscode: {answer.status}"
        if "tcpSocket" in probe:
            port = port_number(container, probe["tcpSocket"]["port"])
            _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
            writer.close()
            return True, ""
        if "exec" in probe:
            argv = [ctx.local_paths(ctx.expand(a)) for a in probe["exec"].get("command") or []]
            env = {k: ctx.local_paths(v) for k, v in ctx.host_env().items()}
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=str(ctx.pod_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                output, _ = await asyncio.wait_for(process.communicate(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
                return False, f"command timed out after {timeout}s"
            return process.returncode == 0, output.decode(errors="replace")[-300:]
    except (TimeoutError, OSError, aiohttp.ClientError) as error:
        return False, str(error) or type(error).__name__
    return True, ""  # a probe kind we do not run (grpc) counts as passed


async def readiness(
    probe: dict | None, ctx: ContainerContext, report: Callable[[bool, str], Awaitable[None]]
) -> None:
    """Probe until cancelled; ``report(ready, message)`` on every change of readiness
    (and on each failure, for the Unhealthy event). No probe: ready at once."""
    if not probe:
        await report(True, "")
        return
    await asyncio.sleep(min(probe.get("initialDelaySeconds", 0), PROBE_PERIOD_CAP))
    period = min(probe.get("periodSeconds", 10), PROBE_PERIOD_CAP)
    successes = failures = 0
    ready = False
    while True:
        passed, why = await probe_once(probe, ctx)
        if passed:
            successes, failures = successes + 1, 0
            if not ready and successes >= probe.get("successThreshold", 1):
                ready = True
                await report(True, "")
        else:
            successes, failures = 0, failures + 1
            if ready and failures >= probe.get("failureThreshold", 3):
                ready = False
            await report(ready, why or "probe failed")
        # until it is first ready, often (a pod should not wait a whole period to be Ready)
        await asyncio.sleep(period if ready else min(period, FIRST_READY_PERIOD))
