"""Door-knock tasks: who gets them, households, the task page, 完成 by SMS, late answers."""

from __future__ import annotations

from sqlalchemy import select

from dispatcher.models import DoorKnockTask, Household, Region, TaskHousehold
from dispatcher.security import make_link_token
from dispatcher.vocabulary import AttemptPurpose
from tests.scenario import County, county

__all__ = ["county"]


async def _tasks_by_region(county: County, warning: int) -> dict[str, DoorKnockTask]:
    async with county.runtime.db.sessions() as session:
        rows = await session.execute(
            select(Region.name, DoorKnockTask)
            .join(DoorKnockTask, DoorKnockTask.region_id == Region.id)
            .where(DoorKnockTask.warning_id == warning)
        )
        return {name: task for name, task in rows.all()}


async def test_assignment_page_sms_and_late_answers(county: County) -> None:
    warning = await county.warn("KNOCK", "red")
    await county.work()
    for who, text in (("c1", "1"), ("t1", "收到"), ("b3", "1"), ("b2", "2")):
        await county.text(who, text)
    await county.work()
    for minutes in (5, 5, 5, 5):  # call again, backup, supervisor, door knock
        await county.at(minutes)

    tasks = await _tasks_by_region(county, warning)
    b3 = await county.responder_id("b3")
    # one task per silent grid / village / township, not one per silent person
    assert set(tasks) == {"上坪村", "下洞一组", "城关镇", "河口村", "河口镇"}
    # 上坪村: nobody there answered -> the nearest in the township (village cadre b3);
    # 下洞一组: b2 answered but asked for help -> b3 of the village above
    assert tasks["上坪村"].assignee_id == b3 and tasks["下洞一组"].assignee_id == b3
    # 河口: nobody in the village or township answered; the county is never asked to knock
    assert tasks["河口村"].assignee_id is None and tasks["河口镇"].assignee_id is None
    handovers = await county.texts_to("b3", AttemptPurpose.TASK)
    assert len(handovers) == 3
    shangping = next(t for t in handovers if "上坪村" in t)
    assert all(name in shangping for name in ("张三", "李四", "孙七")) and "2户" in shangping
    assert f"完成 {tasks['上坪村'].code}" in shangping
    assert len({t.code for t in tasks.values() if t.assignee_id == b3}) == 3
    # the unassignable tasks went to the supervisor at once (河口镇长 is silent himself;
    # his own task goes to the county duty officer)
    assert any("无法派单" in t and "河口村" in t for t in await county.texts_to("h0"))
    assert any("无法派单" in t and "河口镇" in t for t in await county.texts_to("c1"))

    # the page: households of the village, a mark takes the task on, a note, finish
    token = make_link_token(county.runtime.settings.app.secret_key, "t", tasks["上坪村"].id)
    page = await county.client.get(f"/t/{token}")
    assert page.status_code == 200
    assert "上坪村1号" in page.text and "独居老人" in page.text and "下洞一组5号" not in page.text
    async with county.runtime.db.sessions() as session:
        households = {h.external_id: h.id for h in await session.scalars(select(Household))}
    marked = await county.client.post(
        f"/t/{token}", data={"household": str(households["H1"]), "mark": "evacuated"}
    )
    assert marked.status_code == 200 and "已接单" in marked.text and "已转移" in marked.text
    async with county.runtime.db.sessions() as session:
        marks = list(await session.scalars(select(TaskHousehold)))
    assert [(m.household_id, m.mark) for m in marks] == [(households["H1"], "evacuated")]
    foreign = await county.client.post(
        f"/t/{token}", data={"household": str(households["H3"]), "mark": "reached"}
    )
    assert foreign.status_code == 400
    nonsense = await county.client.post(f"/t/{token}", data={"status": "sleeping"})
    assert nonsense.status_code == 400

    # a late answer from a silent person is recorded and shown; the task stays open
    await county.text("a1", "1")
    await county.work()
    assert (await county.calls(warning))["a1"].state == "answered"
    page = await county.client.get(f"/t/{token}")
    assert "已应答（迟）" in page.text and "已接单" in page.text

    # 10 minutes on: tasks nobody accepted go to the supervisor; the accepted one does not
    report = await county.at(10)
    assert report.tasks_escalated == 2  # 下洞一组 and 城关镇 (b3 did not accept them)
    escalations = [t for t in await county.texts_to("t1") if "未接单" in t]
    assert len(escalations) == 2 and not any("上坪村" in t for t in escalations)

    done = await county.client.post(f"/t/{token}", data={"status": "done", "notes": "均已告知"})
    assert done.status_code == 200 and "已完成" in done.text and "均已告知" in done.text
    again = await county.client.post(f"/t/{token}", data={"status": "accepted"})
    assert again.status_code == 400

    # by SMS: a bare 完成 with two tasks open asks which; 完成 <code> finishes one
    await county.text("b3", "完成")
    await county.work()
    assert "多个敲门任务" in (await county.texts_to("b3", AttemptPurpose.REPLY))[-1]
    code = tasks["下洞一组"].code
    await county.text("b3", f"完成 {code.lower()}")
    await county.work()
    assert code in (await county.texts_to("b3", AttemptPurpose.REPLY))[-1]
    await county.text("b3", "完成")  # one left: a bare 完成 finishes it
    await county.work()
    tasks = await _tasks_by_region(county, warning)
    assert tasks["上坪村"].status == tasks["下洞一组"].status == tasks["城关镇"].status == "done"
    assert tasks["河口村"].status == "open"
    await county.text("b3", "完成")
    await county.work()
    assert "没有待完成" in (await county.texts_to("b3", AttemptPurpose.REPLY))[-1]
