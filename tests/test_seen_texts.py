"""A provider posting the same SMS reply twice gets its 200 both times, and the text is
taken once: one answer, one thank-you text, one inbox entry (`dispatcher.seen_texts`)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from dispatcher.models import InboxMessage, SeenText
from dispatcher.vocabulary import AttemptPurpose
from tests.scenario import PHONE, County, county

__all__ = ["county"]


async def post(county: County, who: str, body: str, sid: str | None) -> httpx.Response:
    form = {"From": PHONE.get(who, who), "Body": body}
    if sid is not None:
        form["MessageSid"] = sid
    return await county.client.post("/hooks/sms/inbound", data=form)


async def count(county: County, model: type) -> int:
    async with county.runtime.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_reply_posted_again_is_taken_once(county: County) -> None:
    await county.warn("RAIN", "red")
    await county.work()
    first = await post(county, "a1", "2 求助", "SM" + "1" * 32)
    again = await post(county, "a1", "2 求助", "SM" + "1" * 32)
    assert (first.status_code, again.status_code) == (200, 200)
    assert await county.answers_of("a1") == ["help"]
    assert len(await county.texts_to("a1", AttemptPurpose.REPLY)) == 1
    assert await count(county, SeenText) == 1


async def test_the_same_reply_posted_twice_at_once_is_taken_once(county: County) -> None:
    await county.warn("RAIN", "red")
    await county.work()
    sid = "SM" + "2" * 32
    responses = await asyncio.gather(*(post(county, "a2", "1", sid) for _ in range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert await county.answers_of("a2") == ["received"]
    assert len(await county.texts_to("a2", AttemptPurpose.REPLY)) == 1


async def test_replies_with_their_own_ids_are_each_taken(county: County) -> None:
    await county.warn("RAIN", "red")
    await county.work()
    await post(county, "a1", "1", "SM" + "3" * 32)
    await post(county, "a1", "2 求助", "SM" + "4" * 32)
    assert await county.answers_of("a1") == ["received", "help"]
    assert len(await county.texts_to("a1", AttemptPurpose.REPLY)) == 2


async def test_a_text_nobody_can_take_is_kept_once(county: County) -> None:
    for _ in range(2):
        assert (await post(county, "13911112222", "你好", "SM" + "5" * 32)).status_code == 200
    assert await count(county, InboxMessage) == 1


async def test_texts_without_an_id_are_taken_as_they_come(county: County) -> None:
    """A provider that names no id (Tencent's replies) cannot be told from a person
    texting twice: both are taken."""
    await county.warn("RAIN", "red")
    await county.work()
    await post(county, "a1", "1", None)
    await post(county, "a1", "1", None)
    assert await county.answers_of("a1") == ["received", "received"]
    assert await count(county, SeenText) == 0
