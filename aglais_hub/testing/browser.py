"""Headless Chromium for browser tests: Debian's ``chromium`` driven by Playwright.

No browser download: Playwright is pointed at the system binary, which the
Makefile installs (``make browser``) where it is missing.
"""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Debian's chromium, or $CHROMIUM, or None."""
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
