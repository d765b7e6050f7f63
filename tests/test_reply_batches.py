"""Replies arriving together are recorded together (`dispatcher.reply_batches`): each in
the order it came, each stored before its 200, and one failing callback fails only itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from sqlalchemy import select

from channels.base import InboundText
from dispatcher import reply_batches
from dispatcher.models import Attempt, Call, InboxMessage
from dispatcher.runtime import Runtime
from dispatcher.text_replies import Text
from dispatcher.vocabulary import AttemptPurpose, AttemptStatus
from tests.locks import until_a_lock_is_awaited
from tests.scenario import PHONE, County, county

__all__ = ["county"]


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many texts each transaction recorded (the real recording, only watched)."""
    sizes: list[int] = []
    store = reply_batches.store_texts

    async def watched(runtime: Runtime, texts: Sequence[Text]) -> list[int]:
        attempt_ids = await store(runtime, texts)
        sizes.append(len(texts))
        return attempt_ids

    monkeypatch.setattr(reply_batches, "store_texts", watched)
    return sizes


class HeldFirstBatch:
    """`store_texts` watched: the first batch waits, once started, until `release` is set;
    each batch's senders are kept in `batches`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[str]] = []
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()
        store = reply_batches.store_texts

        async def held_first(runtime: Runtime, texts: Sequence[Text]) -> list[int]:
            self.batches.append([event.sender for event, _ in texts])
            if len(self.batches) == 1:
                self.in_flight.set()
                await self.release.wait()
            return await store(runtime, texts)

        monkeypatch.setattr(reply_batches, "store_texts", held_first)


@pytest.fixture
def held_first_batch(monkeypatch: pytest.MonkeyPatch) -> HeldFirstBatch:
    return HeldFirstBatch(monkeypatch)


def fail_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """`store_texts` fails for any batch holding a text `boom` (the real one otherwise)."""
    store = reply_batches.store_texts

    async def failing_on_boom(runtime: Runtime, texts: Sequence[Text]) -> list[int]:
        if any(event.text == "boom" for event, _ in texts):
            raise RuntimeError("boom")
        return await store(runtime, texts)

    monkeypatch.setattr(reply_batches, "store_texts", failing_on_boom)


def watch_enqueues(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> list[list[int]]:
    """The attempt ids of each `enqueue_attempts` call from now on, sorted."""
    enqueued: list[list[int]] = []
    enqueue = runtime.queue.enqueue_attempts

    async def watched(attempt_ids: Sequence[int]) -> int:
        enqueued.append(sorted(attempt_ids))
        return await enqueue(attempt_ids)

    monkeypatch.setattr(runtime.queue, "enqueue_attempts", watched)
    return enqueued


def record(runtime: Runtime, phone: str, body: str) -> asyncio.Task[None]:
    """One callback's text, recorded as the SMS hook records it."""
    texts = [(InboundText(phone, body), "simulated-sms")]
    return asyncio.create_task(runtime.replies.record(runtime, texts))


async def burst(county: County, texts: list[tuple[str, str]]) -> list[httpx.Response]:
    """Post the texts at once, as a provider does when many people answer together."""
    return list(
        await asyncio.gather(
            *(
                county.client.post(
                    "/hooks/sms/inbound", data={"From": PHONE.get(who, who), "Body": body}
                )
                for who, body in texts
            )
        )
    )


async def inbox(county: County) -> list[tuple[str, str]]:
    async with county.runtime.db.sessions() as session:
        rows = await session.execute(
            select(InboxMessage.phone, InboxMessage.reason).order_by(InboxMessage.id)
        )
        return [(phone, reason) for phone, reason in rows.all()]


async def test_replies_posted_together_are_recorded_together(
    county: County, batch_sizes: list[int]
) -> None:
    warning = await county.warn("RAIN", "red")
    await county.work()
    texts = [
        ("a1", "1"),
        ("a2", "收到"),
        ("b2", "2 求助"),
        ("13911112222", "1"),
        ("b1", "3"),
        ("a3", "好"),
    ]
    responses = await burst(county, texts)

    # every 200 came after its text was committed: nothing is left to do to see them
    assert [r.status_code for r in responses] == [200] * len(texts)
    assert sum(batch_sizes) == len(texts) and len(batch_sizes) < len(texts)
    calls = await county.calls(warning)
    for who in ("a1", "a2", "a3", "b1", "b2"):
        assert calls[who].state == "answered", who
    assert calls["b2"].answer_meaning == "help" and calls["b1"].answer_meaning == "on_duty"
    assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) == 1
    # each text got its own reply; the unknown number is kept for supervisors
    for who in ("a1", "a2", "a3", "b1", "b2"):
        (thanks,) = await county.texts_to(who, AttemptPurpose.REPLY)
        assert "暴雨红色预警" in thanks, thanks
    assert await inbox(county) == [("+8613911112222", "unknown_number")]
    # the replies are queued: the worker sends them
    await county.work()
    assert all(t for t in await county.texts_to("a1", AttemptPurpose.REPLY))


async def test_one_persons_texts_in_a_batch_are_taken_in_the_order_they_came(
    county: County, batch_sizes: list[int]
) -> None:
    warning = await county.warn("RAIN", "red")
    await county.work()
    runtime = county.runtime
    # two callbacks handed over one after the other, the second while the first waits
    first = runtime.replies.record(runtime, [(InboundText(PHONE["b2"], "1"), "simulated-sms")])
    second = runtime.replies.record(
        runtime, [(InboundText(PHONE["b2"], "2 求助"), "simulated-sms")]
    )
    await asyncio.gather(first, second)

    assert batch_sizes == [2]
    assert await county.answers_of("b2") == ["received", "help"]
    call = (await county.calls(warning))["b2"]
    assert call.state == "answered" and call.answer_meaning == "help"
    assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) == 1
    assert len(await county.texts_to("b2", AttemptPurpose.REPLY)) == 2


async def test_codes_pick_the_right_call_when_replies_come_together(county: County) -> None:
    rain = await county.warn("RAIN", "red", codes=("441799100001",))
    wind = await county.warn("WIND", "orange", codes=("441799100001",), event="大风")
    await county.work()
    code_wind = (await county.calls(wind))["a1"].code
    code_rain = (await county.calls(rain))["a2"].code
    assert code_wind and code_rain

    responses = await burst(
        county, [("a1", f"1 {code_wind}"), ("a2", f"3 {code_rain}"), ("a3", "1")]
    )

    assert {r.status_code for r in responses} == {200}
    rain_calls, wind_calls = await county.calls(rain), await county.calls(wind)
    assert wind_calls["a1"].state == "answered" and rain_calls["a1"].state != "answered"
    assert rain_calls["a2"].answer_meaning == "on_duty" and wind_calls["a2"].state != "answered"
    assert rain_calls["a3"].state == wind_calls["a3"].state == "answered"
    assert "还有1条预警未确认" in (await county.texts_to("a1", AttemptPurpose.REPLY))[-1]


async def test_a_reply_arriving_twice_changes_the_call_once(county: County) -> None:
    warning = await county.warn("RAIN", "red")
    await county.work()
    # the provider posts the same help request twice (it did not hear our first 200)
    responses = await burst(county, [("b1", "2 求助"), ("b1", "2 求助")])

    assert {r.status_code for r in responses} == {200}
    call = (await county.calls(warning))["b1"]
    assert call.state == "answered" and call.answer_meaning == "help"
    # both are on record, as given; the supervisor hears of the help request once
    assert await county.answers_of("b1") == ["help", "help"]
    assert len(await county.texts_to("t1", AttemptPurpose.NOTICE)) == 1


async def test_a_reply_for_a_warning_cancelled_meanwhile(county: County) -> None:
    rain = await county.warn("RAIN", "red")
    wind = await county.warn("WIND", "orange", codes=("441799100001",), event="大风")
    await county.work()
    await county.cancel("RAIN")
    await county.work()

    responses = await burst(county, [("a1", "1"), ("b1", "1")])

    assert {r.status_code for r in responses} == {200}
    # a1 still had the wind warning open: that is what the 1 answers
    assert (await county.calls(wind))["a1"].state == "answered"
    rain_calls = await county.calls(rain)
    assert rain_calls["a1"].state == rain_calls["b1"].state == "cancelled"
    assert "大风橙色预警" in (await county.texts_to("a1", AttemptPurpose.REPLY))[-1]
    # b1 had nothing open any more: a polite reply, and the text kept in the inbox
    assert await county.answers_of("b1") == []
    assert await inbox(county) == [(PHONE["b1"], "no_open_call")]
    assert await county.texts_to("b1", AttemptPurpose.REPLY)


async def test_a_failing_reply_fails_only_its_own_request(
    county: County, monkeypatch: pytest.MonkeyPatch
) -> None:
    warning = await county.warn("RAIN", "red")
    await county.work()
    fail_on_boom(monkeypatch)
    posts = [
        county.client.post("/hooks/sms/inbound", data={"From": PHONE[who], "Body": body})
        for who, body in [("a1", "1"), ("a2", "boom"), ("b1", "1"), ("b2", "1")]
    ]
    results = await asyncio.gather(*posts, return_exceptions=True)

    assert isinstance(results[1], RuntimeError)
    assert [r.status_code for r in results if isinstance(r, httpx.Response)] == [200] * 3
    calls = await county.calls(warning)
    assert [calls[w].state for w in ("a1", "b1", "b2")] == ["answered"] * 3
    assert calls["a2"].state != "answered"
    assert await county.answers_of("a2") == []


async def test_a_sender_too_long_for_a_phone_is_refused(county: County) -> None:
    response = await county.client.post(
        "/hooks/sms/inbound", data={"From": "+86" + "1" * 40, "Body": "1"}
    )
    assert response.status_code == 400 and "From" in response.text


async def test_a_reply_takes_its_locks_in_a_send_claims_order(county: County) -> None:
    """A send claim locks its attempts, then marks their call calling; a reply answering
    the call cancels its queued sends. Were the reply to lock the call first, each would
    wait for the other (PostgreSQL would abort one as a deadlock)."""
    if county.runtime.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    warning = await county.warn("RAIN", "red")  # not worked: the first sends are queued
    call_id = (await county.calls(warning))["a1"].id
    async with county.runtime.db.transaction() as claim:
        await claim.execute(
            select(Attempt.id)
            .where(Attempt.call_id == call_id, Attempt.status == AttemptStatus.QUEUED)
            .order_by(Attempt.id)
            .with_for_update()
        )
        reply = asyncio.create_task(county.text("a1", "1"))
        await until_a_lock_is_awaited(county.runtime, "the reply")
        # the reply waits for the sends before it takes the call: the claim gets it now
        await claim.execute(select(Call.id).where(Call.id == call_id).with_for_update(nowait=True))
    await reply

    call = (await county.calls(warning))["a1"]
    assert call.state == "answered"
    async with county.runtime.db.sessions() as session:
        statuses = await session.scalars(
            select(Attempt.status).where(
                Attempt.call_id == call_id, Attempt.purpose == AttemptPurpose.CALL
            )
        )
        assert set(statuses) == {AttemptStatus.CANCELLED}


async def test_a_form_of_too_many_fields_is_refused(county: County) -> None:
    fields = "&".join(f"f{i}=1" for i in range(1001))
    response = await county.client.post(
        "/hooks/sms/inbound",
        content=f"{fields}&From=%2B8613800138000&Body=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and "form" in response.text


async def test_a_crowd_starts_a_second_batch_beside_one_in_flight(
    county: County, held_first_batch: HeldFirstBatch
) -> None:
    """While one batch waits on the database, a crowd of replies is recorded beside it
    (on PostgreSQL); a text from a number whose earlier text is in flight waits for it."""
    await county.warn("RAIN", "red")
    await county.work()
    runtime = county.runtime
    held = held_first_batch

    first = record(runtime, PHONE["b2"], "1")
    await held.in_flight.wait()
    crowd = [
        record(runtime, f"+86139000000{i:02d}", "1") for i in range(reply_batches.SECOND_BATCH)
    ]
    later = record(runtime, PHONE["b2"], "3")
    for _ in range(10):  # let whatever can start run
        await asyncio.sleep(0)
    started_beside = len(held.batches)
    held.release.set()
    await asyncio.gather(first, later, *crowd)

    if runtime.db.is_sqlite:
        assert started_beside == 1  # one writer at a time
    else:
        assert started_beside == 2 and len(held.batches[1]) == len(crowd)
        assert PHONE["b2"] not in held.batches[1]
    assert sorted(len(b) for b in held.batches)[-1] >= len(crowd)
    assert await county.answers_of("b2") == ["received", "on_duty"]


async def test_the_replies_of_a_burst_go_to_the_workers_together(
    county: County, held_first_batch: HeldFirstBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch finishing while more callbacks wait leaves its replies owed; the batch that
    leaves nobody waiting enqueues them all, before its callbacks are answered."""
    await county.warn("RAIN", "red")
    await county.work()
    runtime = county.runtime
    held = held_first_batch
    enqueued = watch_enqueues(monkeypatch, runtime)

    first = record(runtime, PHONE["a1"], "1")
    await held.in_flight.wait()
    rest = [record(runtime, PHONE[who], "1") for who in ("a2", "a3", "b1", "b2")]
    for _ in range(10):
        await asyncio.sleep(0)
    held.release.set()
    await first
    assert enqueued == []  # owed: the others still wait
    await asyncio.gather(*rest)

    assert [len(b) for b in held.batches] == [1, 4]
    async with runtime.db.sessions() as session:
        replies = await session.scalars(
            select(Attempt.id).where(Attempt.purpose == AttemptPurpose.REPLY).order_by(Attempt.id)
        )
        assert enqueued == [list(replies)]
    await county.work()
    for who in ("a1", "a2", "a3", "b1", "b2"):
        (thanks,) = await county.texts_to(who, AttemptPurpose.REPLY)
        assert "暴雨红色预警" in thanks


async def test_replies_owed_are_enqueued_when_the_last_batch_fails(
    county: County, held_first_batch: HeldFirstBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that left its replies owed for the callbacks waiting behind it: if those
    fail, the replies it owed still go to the workers at once."""
    await county.warn("RAIN", "red")
    await county.work()
    runtime = county.runtime
    held = held_first_batch
    fail_on_boom(monkeypatch)
    enqueued = watch_enqueues(monkeypatch, runtime)

    first = record(runtime, PHONE["a1"], "1")
    await held.in_flight.wait()
    boom = record(runtime, PHONE["a2"], "boom")
    for _ in range(10):
        await asyncio.sleep(0)
    held.release.set()
    await first
    with pytest.raises(RuntimeError, match="boom"):
        await boom

    assert sum(len(ids) for ids in enqueued) == 1
    await county.work()
    (thanks,) = await county.texts_to("a1", AttemptPurpose.REPLY)
    assert "暴雨红色预警" in thanks
