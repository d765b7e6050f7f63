"""Inbound texts taken once, however often their provider posts them.

A provider posts an SMS reply again when it did not get our answer in time (Aliyun's
push retries, a Twilio request retried by a proxy): without a record of what was taken,
the same `1` would be a second answer, a second thank-you text, a second inbox entry.
A text its provider names by an id (Twilio's `MessageSid`, Aliyun's `sequence_id`) is
recorded in `seen_texts` in the same transaction that takes it; a text whose (provider,
id) is already there is left out. Texts without an id (Tencent names none) are taken
as they come.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import InboundText
from dispatcher.bulk import insert_skipping_existing
from dispatcher.models import SeenText, table_of

# An inbound text and the name of the provider it came through.
Text = tuple[InboundText, str]
UNIQUE = ["provider", "provider_message_id"]


async def first_seen(session: AsyncSession, texts: Sequence[Text], now: datetime) -> list[Text]:
    """`texts` without those already taken, or earlier in `texts`, under the same
    provider id; records the ids of the rest. A concurrent transaction recording the
    same id makes this one wait for it, then leave the text out."""
    keys: set[tuple[str, str]] = set()
    rows = []
    for event, provider in texts:
        key = (provider, event.provider_message_id or "")
        if event.provider_message_id and key not in keys:
            keys.add(key)
            rows.append({"provider": key[0], "provider_message_id": key[1], "at": now})
    if not rows:
        return list(texts)
    # Rows as parameters, not as VALUES: one statement text whatever their number, so it
    # is compiled once rather than for every batch.
    inserted = await session.execute(_statement(session.get_bind().dialect.name), rows)
    new = {(provider, message_id) for provider, message_id in inserted}
    kept = []
    for event, provider in texts:
        if not event.provider_message_id:
            kept.append((event, provider))
        elif (key := (provider, event.provider_message_id)) in new:
            new.discard(key)  # a second copy in the same batch is left out too
            kept.append((event, provider))
    return kept


@cache
def _statement(dialect: str) -> Any:
    """The insert of `first_seen`, built once per back end (every batch of replies runs it)."""
    seen = table_of(SeenText)
    return insert_skipping_existing(dialect, seen, UNIQUE).returning(
        seen.c.provider, seen.c.provider_message_id
    )
