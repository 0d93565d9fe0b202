"""``python -m aglais_hub.testing.faultproxy``: the fault proxy as a process of its own.

It binds the proxy (TLS) and the control API (plain HTTP) on 127.0.0.1, on the ports
given or on free ones (port 0), writes ``{"pid", "port", "control_port", "server",
"control"}`` to ``--state-file`` once both listen, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aglais_hub.testing.faultproxy", description=__doc__
    )
    parser.add_argument("--upstream", required=True, help="the API server, https://HOST:PORT")
    parser.add_argument("--ca", required=True, type=Path, help="the cluster CA (PEM)")
    parser.add_argument("--cert", required=True, type=Path, help="the proxy's serving cert")
    parser.add_argument("--key", required=True, type=Path, help="its key")
    parser.add_argument("--port", type=int, default=0, help="the proxy's port (0: a free one)")
    parser.add_argument(
        "--control-port", type=int, default=0, help="the control API's port (0: a free one)"
    )
    parser.add_argument("--state-file", type=Path, help="write the bound ports here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server, runners, port, control_port = await serve(
        args.upstream,
        str(args.ca),
        str(args.cert),
        str(args.key),
        port=args.port,
        control_port=args.control_port,
    )
    state = {
        "pid": os.getpid(),
        "port": port,
        "control_port": control_port,
        "server": f"https://127.0.0.1:{port}",
        "control": f"http://127.0.0.1:{control_port}",
        "upstream": args.upstream,
    }
    logging.info(
        "fault proxy %s -> %s; control %s", state["server"], args.upstream, state["control"]
    )
    if args.state_file:
        partial = args.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state))
        partial.replace(args.state_file)  # whole or absent, for whoever polls it
    await stop.wait()
    for runner in runners:
        await runner.cleanup()
    await server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
