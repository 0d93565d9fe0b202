"""The auth proxy's booking-notice bar: where its script goes into a page, and that the
bar shows text (never HTML)."""

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


def test_the_bar_sets_text_never_html() -> None:
    assert "textContent = text" in SCRIPT and "innerHTML" not in SCRIPT
    assert 'replace(/notice\\.js(\\?.*)?$/, "notice")' in SCRIPT  # polls its sibling URL
