"""The auth proxy's booking-notice bar: where its script goes into a page, and, in a real
browser (Debian chromium under Playwright), that the bar shows the notices as text, never
HTML."""

from __future__ import annotations

from aglais_hub.podproxy.notices import SCRIPT, inject_script

TAG = b'<script src="/user/alice/r3/_aglais/notice.js" defer></script>'


def test_the_script_goes_before_the_last_closing_body_tag() -> None:
    page = b"<html><body><p>a</p></body></html>"
    assert inject_script(page, "/user/alice/r3/_aglais/notice.js") == (
        b"<html><body><p>a</p>" + TAG + b"</body></html>"
    )


def test_any_case_and_spacing_of_the_body_tag() -> None:
    page = b"<HTML><BODY>x</BODY >\n</HTML>"
    assert inject_script(page, "/user/alice/r3/_aglais/notice.js") == (
        b"<HTML><BODY>x" + TAG + b"</BODY >\n</HTML>"
    )


def test_a_page_without_a_body_tag_gets_it_at_the_end() -> None:
    assert inject_script(b"<p>hi", "/user/alice/r3/_aglais/notice.js") == b"<p>hi" + TAG


NOTICE = "Your booking 'Gaia <b>join</b>' ends at 12:00 <img src=x onerror=alert(1)>."


def test_the_bar_shows_the_notice_as_text_never_html_in_a_real_browser(browser) -> None:
    """The script, in a page the auth proxy rewrote, polls its sibling URL and shows the
    notices in a bar at the top; markup in a message stays text."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            prefix = "/user/alice/r3/"
            answers = {
                prefix: (
                    "text/html",
                    inject_script(
                        b"<html><body><h1>Zeppelin</h1></body></html>", prefix + "_aglais/notice.js"
                    ),
                ),
                prefix + "_aglais/notice.js": ("text/javascript", SCRIPT.encode()),
                prefix + "_aglais/notice": (
                    "application/json",
                    json.dumps({"notices": [{"message": NOTICE}]}).encode(),
                ),
            }
            kind, body = answers.get(self.path, ("text/plain", b""))
            self.send_response(200 if self.path in answers else 404)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/user/alice/r3/")
        bar = page.wait_for_selector("#aglais-notice", state="visible", timeout=10000)
        assert bar.text_content() == NOTICE
        assert bar.get_attribute("role") == "alert"
        assert page.query_selector("#aglais-notice b") is None
        assert page.query_selector("#aglais-notice img") is None
        assert page.text_content("h1") == "Zeppelin"  # the page itself is untouched
    finally:
        page.close()
        server.shutdown()
