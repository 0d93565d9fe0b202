"""Booking notices inside the notebook: "your booking ends at 12:00, save your work".

For a booking's server (``r<id>``) the auth proxy adds one small script to every HTML
page it passes on; the script asks ``<prefix>_aglais/notice`` every minute and shows
the answer in a bar across the top. The proxy gets the notices from the reservation
service with the server's own hub token (which may read its owner's notices).
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

from tornado import httpclient

CACHE_SECONDS = 20.0
BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
SCRIPT = """(function () {
  var url = document.currentScript.src.replace(/notice\\.js(\\?.*)?$/, "notice");
  var bar = null;
  function show(text) {
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "aglais-notice";
      bar.setAttribute("role", "alert");
      bar.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:2147483647;" +
        "padding:6px 12px;background:#fff3cd;color:#664d03;font:14px sans-serif;" +
        "text-align:center;border-bottom:1px solid #ffe69c";
      document.body.appendChild(bar);
    }
    bar.textContent = text;  /* text, never HTML */
    bar.style.display = text ? "block" : "none";
  }
  function poll() {
    fetch(url, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : {notices: []}; })
      .then(function (d) {
        show((d.notices || []).map(function (n) { return n.message; }).join(" "));
      })
      .catch(function () {});
  }
  poll();
  setInterval(poll, 60000);
})();
"""


def inject_script(body: bytes, script_url: str) -> bytes:
    """``body`` with ``<script src=script_url>`` before its last ``</body>`` (or at the end)."""
    tag = f'<script src="{script_url}" defer></script>'.encode()
    ends = list(BODY_END.finditer(body))
    if not ends:
        return body + tag
    at = ends[-1].start()
    return body[:at] + tag + body[at:]


class NoticeSource:
    """The reservation service's notices for one booked server, cached briefly."""

    def __init__(self, service_url: str, token: str, server_name: str):
        self.url = (
            service_url.rstrip("/") + "/api/notices?" + urlencode({"server_name": server_name})
        )
        self.token = token
        self._cached: tuple[float, list[dict]] | None = None

    async def fetch(self, client: httpclient.AsyncHTTPClient) -> list[dict]:
        """The notices; an empty list when the service does not answer (never an error)."""
        if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        request = httpclient.HTTPRequest(
            self.url, headers={"Authorization": f"token {self.token}"}, request_timeout=5
        )
        try:
            response = await client.fetch(request)
            found = json.loads(response.body).get("notices") or []
        except (httpclient.HTTPClientError, OSError, ValueError):
            found = []
        self._cached = (time.monotonic(), found)
        return found
