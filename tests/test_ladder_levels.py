"""Each level's ladder on the injected clock: steps count from the first accepted send."""

from __future__ import annotations

import pytest

from dispatcher.config import DEFAULT_POLICIES
from dispatcher.vocabulary import AttemptPurpose
from tests.scenario import County, county

__all__ = ["county"]


@pytest.mark.parametrize("level", ["red", "orange", "yellow", "blue"])
async def test_each_level_runs_its_ladder_from_first_delivery(county: County, level: str) -> None:
    policy = DEFAULT_POLICIES[level]
    warning = await county.warn(f"L-{level}", level, codes=("441799100001",))
    # The sends are throttled for 4 minutes: the ladder's clock has not started yet.
    await county.at(4, work=False)
    calls = await county.calls(warning)
    assert all(c.delivered_at is None and c.next_step_at is None for c in calls.values())
    await county.work()
    calls = await county.calls(warning)
    sent_at = county.clock.now()
    assert {c.delivered_at for c in calls.values()} == {sent_at}
    await county.text("a3", "1")  # a3 answers; a1 and a2 stay silent
    await county.work()

    elapsed = 0.0
    for number, step in enumerate(policy.ladder, start=1):
        await county.at(step.at_min - elapsed - 0.5)  # just before: nothing moves
        assert {c.escalation_step for c in (await county.calls(warning)).values()} <= {
            number - 1,
            0,
        }
        report = await county.at(0.5)
        elapsed = step.at_min
        assert report.steps >= 1, f"step {number} ({step.step}) did not run at {elapsed} min"
    calls = await county.calls(warning)
    expected = [s.step for s in policy.ladder]
    assert await county.steps(calls["a1"].id) == expected
    assert calls["a1"].state == "unanswered" and calls["a3"].state == "answered"
    assert await county.steps(calls["a3"].id) == []
    # One digest for the supervisor covering both silent people (a backup call, if any,
    # is not yet due its own notice).
    digests = await county.texts_to("t1", AttemptPurpose.NOTICE)
    assert len(digests) == 1 and "张三" in digests[0] and "李四" in digests[0]
    if "door_knock" in expected:
        tasks = await county.tasks(warning)
        assert len(tasks) == 1 and tasks[0].assignee_id == await county.responder_id("a3")
        handover = await county.texts_to("a3", AttemptPurpose.TASK)
        assert len(handover) == 1 and tasks[0].code in handover[0] and "/t/" in handover[0]
        assert "张三" in handover[0] and "李四" in handover[0] and "2户" in handover[0]
    else:
        assert await county.tasks(warning) == []
    # The task nobody accepted goes to the supervisor once; then nothing more happens.
    before = await county.texts_to("t1")
    report = await county.at(policy.task_accept_within_min)
    assert report.steps == 0
    after = await county.texts_to("t1")
    if "door_knock" in expected:
        assert report.tasks_escalated == 1 and len(after) == len(before) + 1
        assert "孙七" in after[-1] and "未接单" in after[-1]
    else:
        assert after == before
    assert (await county.at(600)).steps == 0
    assert await county.texts_to("t1") == after
