"""Debian's Chromium for Playwright, kept to 127.0.0.1: what the UI test and the UI benchmark drive."""

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-proxy-server",
    # Nothing but 127.0.0.1: any other host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def require_chromium() -> None:
    """Skips a browser test only when chromium is missing outside CI; under CI it fails, unless
    .ci/run found Debian's mirror unreachable (BROWSER_UNAVAILABLE names why)."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium"
    if os.environ.get("BROWSER_UNAVAILABLE"):
        pytest.skip(f"{message}: {os.environ['BROWSER_UNAVAILABLE']}")
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run the browser test, not skip it)")
    pytest.skip(message)
