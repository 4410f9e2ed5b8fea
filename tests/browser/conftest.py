"""Real Chromium (Debian's package) driven by Playwright against the app served over HTTP.

.ci/run installs chromium when it is missing; without it these tests fail and say so.
"""

from __future__ import annotations

import asyncio
import shutil
import socket

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from app import create_app

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (.ci/run does this)")
    return path


@pytest.fixture
async def live_url(settings):
    """The app on a free loopback port, as `exceptao serve` runs it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(create_app(settings), config, shutdown_trigger=stop.wait))
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    yield f"localhost:{port}"
    stop.set()
    await task


@pytest.fixture
async def browser_page():
    """A fresh Chromium page; the CSP violations it reports are collected in page.csp_violations."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        context = await browser.new_context()
        page = await context.new_page()
        violations: list[str] = []
        page.on("console", lambda message: violations.append(message.text)
                if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text else None)
        page.csp_violations = violations
        yield page
        await browser.close()
