"""Answers: overlapping warnings and codes, help requests, statuses over time, the inbox,
and answers recorded by a supervisor."""

from __future__ import annotations

import csv
import io

from sqlalchemy import func, select

from dispatcher.models import Answer, InboxMessage
from dispatcher.vocabulary import AttemptPurpose
from tests.scenario import County, county

__all__ = ["county"]


async def test_two_warnings_bare_one_answers_all_and_a_code_answers_one(county: County) -> None:
    rain = await county.warn("RAIN", "red", codes=("441799100001",))
    wind = await county.warn("WIND", "orange", codes=("441799100001",), event="大风")
    await county.work()
    rain_calls, wind_calls = await county.calls(rain), await county.calls(wind)
    code_rain, code_wind = rain_calls["a1"].code, wind_calls["a1"].code
    assert code_rain and code_wind and code_rain != code_wind
    texts = await county.texts_to("a1", AttemptPurpose.CALL)
    assert any(f"1 {code_rain}" in t for t in texts) and any(f"1 {code_wind}" in t for t in texts)

    # a1 answers only the wind warning, with the code in lower case and full-width digits
    full_width = code_wind[0].lower() + chr(ord(code_wind[1]) + 0xFEE0)
    await county.text("a1", f"１ {full_width}")
    await county.work()
    assert (await county.calls(wind))["a1"].state == "answered"
    assert (await county.calls(rain))["a1"].state != "answered"
    assert "还有1条预警未确认" in (await county.texts_to("a1", AttemptPurpose.REPLY))[-1]

    # a code that is not theirs: a helpful reply listing their codes, kept in the inbox
    await county.text("a1", "1 X9")
    await county.work()
    reply = (await county.texts_to("a1", AttemptPurpose.REPLY))[-1]
    assert "X9" in reply and code_rain in reply
    # a2 answers both at once with a bare word in traditional characters
    await county.text("a2", "確認")
    await county.work()
    assert (await county.calls(rain))["a2"].state == "answered"
    assert (await county.calls(wind))["a2"].state == "answered"
    # a bare 1 from a1 now answers the one still open
    await county.text("a1", "1")
    await county.work()
    assert (await county.calls(rain))["a1"].state == "answered"
    async with county.runtime.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InboxMessage)) == 1


async def test_help_is_an_answer_and_an_alert_listed_first(county: County) -> None:
    warning = await county.warn("HELP", "red", codes=("441799100000",))
    await county.work()
    await county.text("b1", "２ 需要支援")
    await county.work()
    calls = await county.calls(warning)
    assert calls["b1"].state == "answered" and calls["b1"].answer_meaning == "help"
    alerts = await county.texts_to("t1", AttemptPurpose.NOTICE)
    assert len(alerts) == 1 and "赵五" in alerts[0] and "求助" in alerts[0]
    page = (await county.client.get("/dashboard")).text
    assert page.index('id="help-requests"') < page.index("预警叫应情况")
    assert "赵五" in page[: page.index("预警叫应情况")]
    # asking again does not alert again; the ladder has stopped for b1
    await county.text("b1", "求助")
    await county.work()
    assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) == 1
    summary = (await county.client.get(f"/api/v1/warnings/{warning}")).json()
    assert summary["calls"]["help"] == 1


async def test_status_moves_on_with_history_and_evacuated_adds_up(county: County) -> None:
    warning = await county.warn("EVAC", "red", codes=("441799100000",))
    await county.work()
    for text in ("收到", "3", "已转移12人"):
        await county.text("b1", text)
        county.clock.advance(minutes=1)
    await county.text("a1", "4 5")
    await county.text("a2", "4")  # no number: asked for one, nothing recorded
    await county.work()
    calls = await county.calls(warning)
    assert (calls["b1"].answer_meaning, calls["b1"].evacuated) == ("evacuated", 12)
    assert calls["a2"].state != "answered"
    assert "4 12" in (await county.texts_to("a2", AttemptPurpose.REPLY))[-1]
    listed = {
        c["responder"]["id"]: c
        for c in (await county.client.get(f"/api/v1/warnings/{warning}/calls")).json()
    }
    assert [a["label"] for a in listed["b1"]["answers"]] == ["收到", "已部署", "已转移12人"]
    assert listed["b1"]["status"] == "已转移12人"
    summary = (await county.client.get(f"/api/v1/warnings/{warning}")).json()
    assert summary["evacuated"] == 17
    tree = {r["code"]: r for r in summary["regions"]}
    assert tree["441799000000"]["evacuated"] == 17
    assert tree["441799100000"]["evacuated"] == 17
    assert tree["441799100002"]["evacuated"] == 12  # the village holds its grid's count
    assert tree["44179910000201"]["evacuated"] == 12
    assert tree["441799100001"]["evacuated"] == 5
    export = await county.client.get(f"/api/v1/warnings/{warning}/answers.csv")
    rows = list(csv.DictReader(io.StringIO(export.text.lstrip("\ufeff"))))
    assert [
        (r["responder_id"], r["status"], r["people"]) for r in rows if r["responder_id"] == "b1"
    ] == [
        ("b1", "received", ""),
        ("b1", "on_duty", ""),
        ("b1", "evacuated", "12"),
    ]
    assert all(r["channel"] == "sms" and r["raw"] for r in rows)


async def test_unknown_numbers_and_nothing_open_go_to_the_inbox(county: County) -> None:
    await county.text("+8613911112222", "1")  # nobody we know
    await county.text("h1", "收到")  # known, but no warning for 河口镇
    await county.work()
    async with county.runtime.db.sessions() as session:
        kept = list(await session.scalars(select(InboxMessage).order_by(InboxMessage.id)))
    assert [(m.reason, m.text) for m in kept] == [
        ("unknown_number", "1"),
        ("no_open_call", "收到"),
    ]
    assert "没有待确认" in (await county.texts_to("h1", AttemptPurpose.REPLY))[-1]
    inbox = (await county.client.get("/api/v1/inbox")).json()
    assert {m["reason"] for m in inbox} == {"unknown_number", "no_open_call"}
    assert "+8613911112222" in {m["phone"] for m in inbox}  # an admin may call back
    page = (await county.client.get("/dashboard")).text
    assert 'id="inbox"' in page and "号码未登记" in page


async def test_supervisor_records_an_answer_by_hand(county: County) -> None:
    warning = await county.warn("MANUAL", "red", codes=("441799100001",))
    await county.work()
    calls = await county.calls(warning)
    url = f"/api/v1/calls/{calls['a2'].id}/answers"
    bad = await county.client.post(url, json={"status": "evacuated", "recorded_by": "王镇长"})
    assert bad.status_code == 422 and "people" in bad.text
    missing = await county.client.post(url, json={"status": "received"})
    assert missing.status_code == 422 and "recorded_by" in missing.text
    unknown = await county.client.post(
        "/api/v1/calls/999999/answers", json={"status": "received", "recorded_by": "x"}
    )
    assert unknown.status_code == 404
    ok = await county.client.post(
        url, json={"status": "received", "recorded_by": "王镇长", "method": "phone"}
    )
    assert ok.status_code == 201 and ok.json()["recorded_by"] == "王镇长"
    form = await county.client.get(f"/calls/{calls['a3'].id}/manual")
    assert form.status_code == 200 and "孙七" in form.text
    posted = await county.client.post(
        f"/calls/{calls['a3'].id}/manual",
        data={
            "status": "evacuated",
            "people": "3",
            "recorded_by": "城关值班",
            "method": "in_person",
        },
    )
    assert posted.status_code == 200 and "已登记" in posted.text
    refused = await county.client.post(
        f"/calls/{calls['a3'].id}/manual", data={"status": "received", "recorded_by": ""}
    )
    assert refused.status_code == 400
    calls = await county.calls(warning)
    assert calls["a2"].state == calls["a3"].state == "answered"
    assert calls["a3"].evacuated == 3
    async with county.runtime.db.sessions() as session:
        manual = list(await session.scalars(select(Answer).where(Answer.channel == "manual")))
    assert {(a.recorded_by, a.method) for a in manual} == {
        ("王镇长", "phone"),
        ("城关值班", "in_person"),
    }
    listed = (await county.client.get(f"/api/v1/warnings/{warning}/calls")).json()
    a2 = next(c for c in listed if c["responder"]["id"] == "a2")
    assert a2["answers"][0]["manual"] is True and a2["answers"][0]["recorded_by"] == "王镇长"
    page = (await county.client.get(f"/warnings/{warning}")).text
    assert "人工登记：王镇长" in page
    # the silent person later answers themselves: kept too, and not marked manual
    await county.text("a2", "3")
    await county.work()
    listed = (await county.client.get(f"/api/v1/warnings/{warning}/calls")).json()
    a2 = next(c for c in listed if c["responder"]["id"] == "a2")
    assert [a["manual"] for a in a2["answers"]] == [True, False]
