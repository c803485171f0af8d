"""The console in a real headless browser: Debian's chromium, driven by playwright.

The page is opened on a real ``brainless console`` over a real nats-server; another node then changes the
data, and the change must appear on the page without a reload. Without ``chromium`` on the ``PATH`` these
tests are skipped, unless ``BRAINLESSDB_REQUIRE_CHROMIUM=1`` (CI sets it), where they fail instead.

``BRAINLESSDB_CONSOLE_SCREENSHOT=docs/console.png`` saves the page as the first test leaves it (the
screenshot of the docs is made so).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Response, async_playwright, expect

from brainlessdb import Brainless
from brainlessdb.embedded import EmbeddedServer
from tests.console.conftest import running_console
from tests.console.data import BAD_KEY, CALLS, seed, write_garbage

CHROMIUM = shutil.which("chromium")
REQUIRED = os.environ.get("BRAINLESSDB_REQUIRE_CHROMIUM") == "1"
SCREENSHOT = os.environ.get("BRAINLESSDB_CONSOLE_SCREENSHOT")

pytestmark = [
    pytest.mark.nats,
    pytest.mark.skipif(
        CHROMIUM is None and not REQUIRED,
        reason="chromium is not installed: the console is not tried in a browser",
    ),
]

WAIT_MS = 10_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("BRAINLESSDB_REQUIRE_CHROMIUM=1 but chromium is not installed")
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A new page at ``url``, and the list its script errors and failed requests are collected in."""
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"script: {exc}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console: {message.text}")  # failed requests are told by on_response

    def on_response(response: Response) -> None:
        if response.status >= 400:
            errors.append(f"{response.status} {urlsplit(response.url).path}")

    page.on("console", on_console)
    page.on("response", on_response)
    await page.goto(url)
    return page, errors


async def test_the_page_shows_the_namespace_and_a_change_from_another_node_appears_without_reload(
    browser: Browser, nats_server: EmbeddedServer, namespace: str
) -> None:
    if SCREENSHOT:
        namespace = "callcentre"  # for the docs (the server is this run's own, so the name is still unused)
    uuids = await seed(nats_server.url, namespace)
    await write_garbage(nats_server.url, namespace)
    first = uuids["SIP/4711-0001"]
    args = ("-s", nats_server.url, "-n", namespace, "console", "--listen", "127.0.0.1:0")
    with running_console(*args) as con:
        page, errors = await open_page(browser, con.url)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#namespace")).to_have_text(namespace)

        # Collections, with their counts.
        calls_row = page.locator('#collections tr[data-collection="call"]')
        await expect(calls_row.locator("td")).to_have_text(["call", str(len(CALLS)), "1"])
        await expect(page.locator('#collections tr[data-collection="agent"] td').nth(1)).to_have_text("3")

        # The entity table of a collection, then with find's criteria and an order.
        await calls_row.click()
        await expect(page.locator("#collection-title")).to_have_text("call")
        await expect(page.locator("#entities tbody tr")).to_have_count(len(CALLS))
        await page.fill("#where", "state=waiting priority__lt=3")
        await page.fill("#order-by", "-priority")
        await page.click("#query button")
        waiting = sorted(
            (c for c in CALLS if c["state"] == "waiting" and c["priority"] < 3), key=lambda c: -c["priority"]
        )
        channels = page.locator('#entities tbody td[data-field="channel_id"]')
        await expect(channels).to_have_text([c["channel_id"] for c in waiting])
        await expect(page.locator("#matched")).to_have_text(f"{len(waiting)} of {len(CALLS)} match")

        # Bad criteria say why, and the table stays usable.
        await page.fill("#where", "colour=red")
        await page.click("#query button")
        await expect(page.locator("#query-error")).to_contain_text("bad criteria")
        await page.fill("#where", "state=waiting")
        await page.click("#query button")
        await expect(page.locator("#query-error")).to_be_hidden()
        await expect(page.locator("#entities tbody tr")).to_have_count(3)

        # One entity: each field with its time and the node that wrote it; the dead letter below.
        await page.locator(f'#entities tr[data-uuid="{first}"]').click()
        await expect(page.locator("#entity-uuid")).to_have_text(first)
        state_row = page.locator('#entity tr[data-field="state"] td')
        await expect(state_row.nth(1)).to_have_text("waiting")
        await expect(state_row.nth(3)).to_have_text("prague-1")
        await expect(state_row.nth(2)).to_have_text(r_time())
        await expect(page.locator("#dead-letters tbody td").first).to_have_text(BAD_KEY)

        # Another node changes the data: the page follows, without a reload.
        await page.evaluate("window.notReloaded = true")
        async with Brainless(nats_server.url, namespace=namespace, location="brno-2") as other:
            call = await other.call.get(first)
            assert call is not None
            call.agent_id = 14
            call.caller["city"] = "Kolin"
            await other.flush()
            row = page.locator(f'#entities tr[data-uuid="{first}"]')
            await expect(row.locator('td[data-field="agent_id"]')).to_have_text("14")
            await expect(row.locator('td[data-field="caller"]')).to_contain_text('"city":"Kolin"')
            await expect(page.locator('#entity tr[data-field="agent_id"] td').nth(1)).to_have_text("14")
            await expect(page.locator('#entity tr[data-field="agent_id"] td').nth(3)).to_have_text("brno-2")
            await expect(page.locator('#entity tr[data-field="state"] td').nth(3)).to_have_text("prague-1")
            await expect(page.locator("#events li").first).to_contain_text("agent_id: null → 14")

            added = other.call.add({**CALLS[0], "channel_id": "SIP/4711-0006", "priority": 4})
            await other.flush()
            await expect(page.locator(f'#entities tr[data-uuid="{added.uuid}"]')).to_have_count(1)
            await expect(page.locator("#entities tbody tr")).to_have_count(4)
            await expect(calls_row.locator("td").nth(1)).to_have_text(str(len(CALLS) + 1))

            leaving = await other.call.get(uuids["SIP/4711-0005"])
            assert leaving is not None
            leaving.state = "ringing"  # no longer matches state=waiting
            await other.flush()
            await expect(page.locator(f'#entities tr[data-uuid="{leaving.uuid}"]')).to_have_count(0)
            await expect(page.locator("#entities tbody tr")).to_have_count(3)
            await expect(page.locator("#events li")).to_have_count(3)

            # The running nodes, brno-2 among them.
            await expect(page.locator('#nodes tr[data-location="brno-2"]')).to_have_count(1)
            assert await page.evaluate("window.notReloaded") is True

            png = await page.screenshot(full_page=True)
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
            if SCREENSHOT:
                await asyncio.to_thread(Path(SCREENSHOT).write_bytes, png)
        assert errors == ["400 /api/collections/call/entities"]  # the bad criteria, and nothing else
        code, err = con.stop()
    assert code == 0, err


def r_time() -> object:
    """A field's time as the page shows it: UTC, to the millisecond."""
    import re

    return re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


async def test_a_page_without_the_token_asks_for_it_and_then_shows_the_data(
    browser: Browser, nats_server: EmbeddedServer, namespace: str
) -> None:
    await seed(nats_server.url, namespace)
    args = ("-s", nats_server.url, "-n", namespace, "console", "--listen", "127.0.0.1:0")
    with running_console(*args, "--console-token", "open-sesame") as con:
        page, errors = await open_page(browser, con.url)
        await expect(page.locator("#token-form")).to_be_visible()
        await expect(page.locator("#collections tbody tr")).to_have_count(0)
        await page.fill("#token-input", "open-sesame")
        await page.click("#token-form button")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator("#collections tbody tr")).to_have_count(2)
        # The token in the address works too, for a bookmark.
        second, more = await open_page(browser, con.url + "?token=open-sesame")
        await expect(second.locator("#live")).to_have_attribute("data-state", "live")
        await expect(second.locator("#collections tbody tr")).to_have_count(2)
        assert errors == ["401 /api/info"] and more == []
        code, err = con.stop()
    assert code == 0, err
