"""Dashboard pages, per role: login, CSRF, region scope (no township sees another by URL
guessing), viewers never see a phone number, and every page and export answers."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from openpyxl import load_workbook

from dispatcher import figures
from dispatcher.app import create_app
from dispatcher.runtime import Runtime
from tests.auth import PASSWORD, csrf_of, make_user, sign_in
from tests.scenario import County, county

__all__ = ["county"]

CHENGGUAN, HEKOU = "441799100000", "441799200000"


@asynccontextmanager
async def client_as(
    runtime: Runtime, username: str, role: str, region: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await sign_in(client, runtime, username=username, role=role, region=region)
        yield client


async def two_warnings(county: County) -> tuple[int, int]:
    """A county-wide warning and one for 河口镇 only, both sent."""
    everywhere = await county.warn("ALL", "red")
    hekou = await county.warn("HK", "red", codes=(HEKOU,))
    await county.work()
    return everywhere, hekou


def pages_of(warning: int) -> list[str]:
    return [
        "/dashboard",
        f"/warnings/{warning}",
        f"/warnings/{warning}?region={CHENGGUAN}",
        f"/warnings/{warning}/report",
        f"/map?warning={warning}",
        "/map",
        "/tasks",
        "/directory/regions",
        "/directory/responders?q=张",
        "/directory/speakers",
        f"/warnings/{warning}/export/calls.csv",
        f"/warnings/{warning}/export/attempts.csv",
        f"/warnings/{warning}/export/answers.csv",
        f"/warnings/{warning}/export/tasks.csv",
        f"/warnings/{warning}/export.xlsx",
        f"/api/v1/warnings/{warning}/answers.csv",
        "/api/v1/warnings",
        f"/api/v1/warnings/{warning}",
        f"/api/v1/warnings/{warning}/calls",
        "/api/v1/inbox",
    ]


async def test_nobody_logged_in_is_sent_to_login(county: County) -> None:
    everywhere, _ = await two_warnings(county)
    transport = httpx.ASGITransport(app=create_app(county.runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anon:
        for url in pages_of(everywhere):
            response = await anon.get(url)
            if url.startswith("/api/"):
                assert response.status_code == 401, url
                assert response.json() == {"detail": "login required"}
            else:
                assert response.status_code == 303, url
                assert response.headers["location"].startswith("/login?next=")
        assert (await anon.get("/static/app.css")).status_code == 200
        form = await anon.get("/login")
        token = csrf_of(form.text)
        wrong = await anon.post(
            "/login", data={"username": "duty", "password": "nope", "csrf_token": token}
        )
        assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
        no_csrf = await anon.post("/login", data={"username": "duty", "password": PASSWORD})
        assert no_csrf.status_code == 403
        # a login never sends the user to another site
        right = await anon.post(
            "/login",
            data={
                "username": "duty",
                "password": PASSWORD,
                "csrf_token": token,
                "next": "//evil.example/x",
            },
        )
        assert right.status_code == 303 and right.headers["location"] == "/dashboard"
        assert (await anon.get("/dashboard")).status_code == 200
        # logging out needs the CSRF token too
        page = (await anon.get("/dashboard")).text
        assert (await anon.post("/logout")).status_code == 403
        out = await anon.post("/logout", data={"csrf_token": csrf_of(page)})
        assert out.status_code == 303
        assert (await anon.get("/dashboard")).status_code == 303


@pytest.mark.parametrize(
    ("role", "region"), [("admin", None), ("supervisor", CHENGGUAN), ("viewer", None)]
)
async def test_every_page_answers_every_role(county: County, role: str, region: str | None) -> None:
    everywhere, _ = await two_warnings(county)
    await county.text("a1", "1")
    await county.text("b1", "2")  # help
    await county.work()
    await county.at(60)
    async with client_as(county.runtime, f"{role}1", role, region) as client:
        for url in pages_of(everywhere):
            response = await client.get(url)
            assert response.status_code == 200, (url, response.text[:300])
        page = (await client.get(f"/warnings/{everywhere}")).text
        assert page.index('id="help-requests"') < page.index('id="silent-card"')
        assert "赵五" in page[: page.index('id="silent-card"')]
        assert "<svg" in page and "应答时间曲线" in page
        if role == "viewer":
            assert "13900000012" not in page and "tel:" not in page and "139****0012" in page
        else:
            assert 'href="tel:+8613900000012"' in page


async def test_a_township_supervisor_sees_only_their_township(county: County) -> None:
    everywhere, hekou = await two_warnings(county)
    calls = await county.calls(everywhere)
    async with client_as(county.runtime, "hk", "supervisor", HEKOU) as client:
        # the 河口 warning and the county-wide one are theirs to see, cut to 河口镇
        listed = {w["id"] for w in (await client.get("/api/v1/warnings")).json()}
        assert listed == {everywhere, hekou}
        summary = (await client.get(f"/api/v1/warnings/{everywhere}")).json()
        assert summary["calls"]["total"] == 2  # 河口镇长, 吴九
        assert {r["code"] for r in summary["regions"]} == {HEKOU, "441799200001"}
        names = {
            c["responder"]["name"]
            for c in (await client.get(f"/api/v1/warnings/{everywhere}/calls")).json()
        }
        assert names == {"河口镇长", "吴九"}
        page = (await client.get(f"/warnings/{everywhere}")).text
        assert "吴九" in page and "张三" not in page and "城关镇" not in page
        export = (await client.get(f"/warnings/{everywhere}/export/calls.csv")).text
        assert "吴九" in export and "张三" not in export
        book = load_workbook(
            io.BytesIO((await client.get(f"/warnings/{everywhere}/export.xlsx")).content)
        )
        assert book.sheetnames == ["calls", "attempts", "answers", "tasks"]
        assert book["calls"].max_row == 3  # header + two people
        report = (await client.get(f"/warnings/{everywhere}/report")).text
        assert "吴九" in report and "张三" not in report and "收到预警" in report
        people = (await client.get("/directory/responders")).text
        assert "吴九" in people and "张三" not in people
        assert "城关镇" not in (await client.get("/directory/regions")).text
        # guessing URLs of another township: nothing there
        for url in (
            f"/warnings/{everywhere}?region={CHENGGUAN}",
            f"/live?warning={everywhere}&region={CHENGGUAN}",
            f"/calls/{calls['a1'].id}/manual",
        ):
            assert (await client.get(url)).status_code == 404, url
        posted = await client.post(
            f"/api/v1/calls/{calls['a1'].id}/answers",
            json={"status": "received", "recorded_by": "hk"},
        )
        assert posted.status_code == 404
        assert (await client.get("/api/v1/warnings/totals")).status_code == 403
    async with client_as(county.runtime, "cg", "supervisor", CHENGGUAN) as client:
        for url in [
            f"/warnings/{hekou}",
            f"/warnings/{hekou}/report",
            f"/warnings/{hekou}/export/calls.csv",
            f"/warnings/{hekou}/export.xlsx",
            f"/map?warning={hekou}",
            f"/live?warning={hekou}",
            f"/api/v1/warnings/{hekou}",
            f"/api/v1/warnings/{hekou}/calls",
            f"/api/v1/warnings/{hekou}/raw",
            f"/api/v1/warnings/{hekou}/answers.csv",
        ]:
            assert (await client.get(url)).status_code == 404, url
        assert "河口" not in (await client.get("/dashboard")).text
        # a browser gets the refusal as a page, an API client as JSON
        page = await client.get(f"/warnings/{hekou}", headers={"Accept": "text/html"})
        assert page.status_code == 404 and "不在您负责的区域内" in page.text
        api = await client.get(f"/api/v1/warnings/{hekou}", headers={"Accept": "text/html"})
        assert api.json() == {"detail": f"no warning {hekou}"}
        # a region code that does not exist reads the same as one out of scope
        assert (await client.get(f"/warnings/{everywhere}?region=999")).status_code == 404


async def test_viewers_read_but_never_see_numbers_or_record(county: County) -> None:
    everywhere, _ = await two_warnings(county)
    calls = await county.calls(everywhere)
    await county.text("+8613911112222", "1")
    await county.work()
    async with client_as(county.runtime, "view", "viewer") as client:
        for url in (
            f"/warnings/{everywhere}",
            "/directory/responders",
            f"/warnings/{everywhere}/export/attempts.csv",
            "/api/v1/inbox",
            "/dashboard",
        ):
            text = (await client.get(url)).text
            assert "13900000011" not in text and "13911112222" not in text, url
        assert "139****0011" in (await client.get("/directory/responders")).text
        assert "u1***" in (await client.get("/directory/responders")).text
        assert (await client.get(f"/calls/{calls['a1'].id}/manual")).status_code == 403
        posted = await client.post(
            f"/api/v1/calls/{calls['a1'].id}/answers",
            json={"status": "received", "recorded_by": "v"},
        )
        assert posted.status_code == 403
    assert (await county.calls(everywhere))["a1"].state != "answered"


async def test_manual_answers_need_the_csrf_token(county: County) -> None:
    everywhere, _ = await two_warnings(county)
    calls = await county.calls(everywhere)
    client = county.client
    token = client.headers.pop("X-CSRF-Token")
    url = f"/calls/{calls['a2'].id}/manual"
    form = await client.get(url)
    assert f'value="{token}"' in form.text
    fields = {"status": "received", "recorded_by": "王镇长", "method": "phone"}
    assert (await client.post(url, data=fields)).status_code == 403
    assert (await client.post(url, data={**fields, "csrf_token": "forged"})).status_code == 403
    api = f"/api/v1/calls/{calls['a2'].id}/answers"
    assert (await client.post(api, json=fields)).status_code == 403
    assert (await county.calls(everywhere))["a2"].state != "answered"
    done = await client.post(url, data={**fields, "csrf_token": token})
    assert done.status_code == 200 and "已登记" in done.text
    assert (await county.calls(everywhere))["a2"].state == "answered"


async def test_drill_down_and_the_task_board(county: County) -> None:
    everywhere, hekou = await two_warnings(county)
    await county.text("a1", "1")
    await county.work()
    for minutes in (10, 20, 40, 60, 90):
        await county.at(minutes)
    page = (await county.client.get(f"/warnings/{everywhere}")).text
    top = page[page.index('id="regions"') : page.index('id="latest"')]
    assert "青溪县" in top
    county_page = (await county.client.get(f"/warnings/{everywhere}?region=441799000000")).text
    rows = county_page[county_page.index('id="regions"') : county_page.index('id="latest"')]
    assert "城关镇" in rows and "河口镇" in rows
    township = (await county.client.get(f"/warnings/{everywhere}?region={CHENGGUAN}")).text
    rows = township[township.index('id="regions"') : township.index('id="latest"')]
    assert "上坪村" in rows and "下洞村" in rows and "河口村" not in rows
    assert 'id="breadcrumbs"' in township and "吴九" not in township
    tasks = await county.tasks(everywhere)
    assert tasks, "an hour and a half of silence opens door-knock tasks"
    board = (await county.client.get("/tasks")).text
    assert 'id="column-open"' in board and board.count('class="task"') == len(tasks) + len(
        await county.tasks(hekou)
    )
    report = (await county.client.get(f"/warnings/{everywhere}/report")).text
    assert "收到预警" in report and "生成敲门任务" in report and "应答" in report
    regions = (await county.client.get(f"/map?warning={everywhere}")).text
    assert 'id="unmapped"' in regions and "城关镇" in regions


async def test_user_add_refuses_what_cannot_work(county: County) -> None:
    from dispatcher.users import UserRefused, add_user

    async with county.runtime.db.transaction() as session:
        for kwargs, problem in [
            ({"role": "supervisor", "region_code": None}, "region"),
            ({"role": "admin", "region_code": CHENGGUAN}, "region"),
            ({"role": "boss", "region_code": None}, "role"),
            ({"role": "viewer", "region_code": "000"}, "no region"),
            ({"role": "viewer", "region_code": None, "password": "short"}, "password"),
            ({"role": "viewer", "region_code": None, "username": "a b"}, "username"),
        ]:
            arguments = {"username": "x1", "password": PASSWORD, "now": county.clock.now()}
            with pytest.raises(UserRefused, match=problem):
                await add_user(session, **{**arguments, **kwargs})
    await make_user(county.runtime, "x1", "viewer")
    async with county.runtime.db.transaction() as session:
        with pytest.raises(UserRefused, match="exists"):
            await add_user(
                session,
                username="x1",
                password=PASSWORD,
                role="viewer",
                region_code=None,
                now=county.clock.now(),
            )


async def test_guessing_passwords_locks_the_username(county: County) -> None:
    transport = httpx.ASGITransport(app=create_app(county.runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anon:
        token = csrf_of((await anon.get("/login")).text)

        async def attempt(password: str) -> int:
            data = {"username": "duty", "password": password, "csrf_token": token}
            return (await anon.post("/login", data=data)).status_code

        assert [await attempt(f"guess{n}") for n in range(10)] == [401] * 10
        assert await attempt(PASSWORD) == 429  # even the right one, for a while


async def test_headings_count_everyone_when_the_lists_stop(
    county: County,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page lists at most `LISTED_PEOPLE` a kind; its headings still count everyone."""
    monkeypatch.setattr(figures, "LISTED_PEOPLE", 3)
    warning_id = await county.warn("LISTED-1")
    await county.work()
    page = (await county.client.get(f"/warnings/{warning_id}")).text
    assert "尚未应答（11）" in page and "列出前 3 人，按区域排列。" in page
    assert page.count('class="silent"') == 3
    for who in ("a1", "a2", "a3", "b3", "b1"):
        await county.text(who, "1")
    page = (await county.client.get(f"/warnings/{warning_id}")).text
    assert "尚未应答（6）" in page
    assert "已应答 5 人（最新状态与记录，列出前 3 人）" in page
