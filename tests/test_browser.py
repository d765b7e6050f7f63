"""The dashboard in a real browser: Playwright drives the system Chromium.

During the demo county's red warning a duty officer logs in, opens the warning, sees the
rate move when an answer comes in (posted by the test, over the live stream, no reload),
drills down to a township and exports the calls. A screenshot of the warning page is kept
in `$JIAOYING_TEST_ARTIFACTS` (default `tests/artifacts/`). Without Chromium the test is
skipped with the reason, except in CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatcher.app import create_app
from dispatcher.demo import DEMO_CAP
from dispatcher.demo_county import COUNTY_CODE, write_demo_directory
from dispatcher.directory import import_directory
from dispatcher.models import Call, Responder
from dispatcher.runtime import Runtime
from dispatcher.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, make_link_token, sign_body
from dispatcher.worker import run_until_idle
from tests.auth import PASSWORD, make_user
from tests.conftest import IN_CI, SENDER_SECRET
from tests.fakes.serving import serve

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
CHROMIUM = os.environ.get("JIAOYING_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("JIAOYING_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))


@pytest.fixture
def chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"CI needs the browser: {reason}")
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return path


def read_download(path: str) -> str:
    return Path(path).read_text(encoding="utf-8-sig")


async def post_demo_warning(url: str, runtime: Runtime) -> int:
    now = runtime.clock.now()
    body = DEMO_CAP.format(
        identifier="BROWSER1",
        county=COUNTY_CODE,
        sent=now.isoformat(timespec="seconds"),
        expires=(now.replace(year=now.year + 1)).isoformat(timespec="seconds"),
    ).encode()
    timestamp = str(int(now.timestamp()))
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign_body(SENDER_SECRET, timestamp, body),
        "Content-Type": "application/cap+xml",
    }
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/v1/warnings", content=body, headers=headers)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def answer_link(runtime: Runtime, warning_id: int) -> tuple[str, str]:
    """The one-tap answer link of a village cadre's call, and their name."""
    async with runtime.db.sessions() as session:
        call_id, name = (
            await session.execute(
                select(Call.id, Responder.name)
                .join(Responder, Responder.id == Call.responder_id)
                .where(Call.warning_id == warning_id, Responder.external_id.like("vs-%"))
                .order_by(Call.id)
                .limit(1)
            )
        ).one()
    return f"/a/{make_link_token(runtime.settings.app.secret_key, 'a', call_id)}", name


@pytest.fixture
async def demo_site(runtime: Runtime, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """The demo county imported, a red warning sent to it, the app on a free port."""
    write_demo_directory(tmp_path / "demo")
    async with runtime.db.transaction() as session:
        await import_directory(session, tmp_path / "demo")
    await make_user(runtime, "duty", "admin")
    async with serve(create_app(runtime)) as url:
        warning_id = await post_demo_warning(url, runtime)
        await run_until_idle(runtime)
        yield url, warning_id


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
async def test_duty_officer_watches_a_warning_in_the_browser(
    chromium: str, demo_site: tuple[str, int], runtime: Runtime, backend: Any
) -> None:
    from playwright.async_api import async_playwright, expect

    url, warning_id = demo_site
    link, name = await answer_link(runtime, warning_id)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = await browser.new_page(
                accept_downloads=True, viewport={"width": 1280, "height": 1400}
            )
            await page.goto(f"{url}/warnings/{warning_id}")
            assert "/login" in page.url  # nobody logged in yet
            await page.fill("input[name=username]", "duty")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("form[action='/login'] button")
            await page.wait_for_url(f"**/warnings/{warning_id}")
            rate = page.locator("#rate")
            await expect(rate).to_have_text("0.0%")
            await expect(page.locator("#live")).to_have_text("● 实时")
            await expect(page.locator("tr.silent")).to_have_count(200)
            # the test answers for one cadre through their one-tap link
            async with httpx.AsyncClient(base_url=url) as phone:
                assert (await phone.get(link)).status_code == 200
            await expect(rate).to_have_text("0.5%")  # 1 of 200, without a reload
            await expect(page.locator("#latest")).to_contain_text(name)
            await expect(page.locator(f"tr.now-answered:has-text('{name}')")).to_have_count(1)
            await expect(page.locator("#curve path")).to_have_count(1)  # the curve redrawn
            county_row = page.locator(f"tr[data-r='{COUNTY_CODE}'] .r-count")
            await expect(county_row).to_have_text("1 / 200")  # and the region table
            await page.screenshot(path=str(ARTIFACTS / "warning-page.png"))
            # drill down: county, then its first township
            await page.locator("a.drill-down").first.click()
            await page.wait_for_url(f"**region={COUNTY_CODE}")
            township = page.locator("a.drill-down").first
            township_name = await township.inner_text()
            await township.click()
            await page.wait_for_url("**region=4417991*")
            await expect(page.locator("#breadcrumbs")).to_contain_text(township_name)
            assert await page.locator("tr.silent").count() < 200
            # export the calls of this warning
            async with page.expect_download() as download_info:
                await page.locator("a.export").first.click()
            download = await download_info.value
            exported = read_download(str(await download.path()))
            assert exported.startswith("call_id,") and name in exported
            assert len(exported.strip().splitlines()) == 201
            # the map: every region of the demo county drawn, the silent ones ringed
            await page.click("header a[href='/map']")
            assert await page.locator("svg.map .region-shape").count() > 20
            assert await page.locator("svg.map .silent-mark").count() > 20
            await page.screenshot(path=str(ARTIFACTS / "map-page.png"))
        finally:
            await browser.close()
