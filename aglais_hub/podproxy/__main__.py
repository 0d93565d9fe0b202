"""`aglais-podproxy`: run the auth proxy (inside a notebook pod)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from jupyterhub.services.auth import HubOAuth

from ..reservations.gate import booking_id
from .app import ProxyState, make_app, report_activity
from .crosssite import public_origins_from
from .notices import NoticeSource
from .sparkrights import SparkRights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aglais-podproxy", description=__doc__)
    parser.add_argument("--ip", default=os.environ.get("AGLAIS_PROXY_IP", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--upstream", default="http://127.0.0.1:8080")
    parser.add_argument(
        "--notebook", default="Zeppelin", help="the upstream's title, for its starting page"
    )
    parser.add_argument("--volume", type=Path, help="the user's volume, for disk usage")
    parser.add_argument("--quota-bytes", type=int, default=0)
    parser.add_argument("--activity-interval", type=float, default=60)
    parser.add_argument(
        "--spark-ui",
        default="http://127.0.0.1:4040",
        help="the Spark driver's UI; its running jobs count as activity",
    )
    args = parser.parse_args(argv)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    # one instance for every handler: the OAuth state (PKCE verifier) lives in it
    hub_auth = HubOAuth.instance(
        api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""), cache_max_age=60
    )
    state = ProxyState(
        upstream=args.upstream.rstrip("/"),
        prefix=prefix,
        notebook=args.notebook,
        volume=args.volume,
        quota_bytes=args.quota_bytes,
        spark_ui=args.spark_ui.rstrip("/"),
    )
    state.public_origins = public_origins_from(os.environ)  # allowed besides the Host
    server_name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    service_url = os.environ.get("AGLAIS_RESERVATIONS_URL", "")
    if service_url and booking_id(server_name) is not None:  # a booking's server
        state.notices = NoticeSource(service_url, hub_auth.api_token, server_name)
    state.spark_rights = SparkRights.from_environment()  # None outside a cluster

    async def serve() -> None:
        make_app(state, hub_auth).listen(args.port, args.ip, xheaders=True)
        # kept in a local: the loop holds tasks only weakly, and serve() never returns
        watching = asyncio.ensure_future(state.spark_rights.watch()) if state.spark_rights else None
        await report_activity(state, hub_auth, args.activity_interval)
        del watching

    asyncio.run(serve())


if __name__ == "__main__":
    main()
