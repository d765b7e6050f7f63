"""What the provider end-to-end worlds ask of the database, by a responder's directory id."""

from __future__ import annotations

from sqlalchemy import select

from dispatcher.models import Attempt, Call, Responder
from dispatcher.runtime import Runtime


class WorldQueries:
    """Mixed into a test world that has a `runtime`."""

    runtime: Runtime

    async def attempts_of(self, external_id: str) -> dict[str, list[Attempt]]:
        """The person's attempts by channel, oldest first."""
        async with self.runtime.db.sessions() as session:
            rows = await session.scalars(
                select(Attempt)
                .join(Responder, Responder.id == Attempt.responder_id)
                .where(Responder.external_id == external_id)
                .order_by(Attempt.id)
            )
            found: dict[str, list[Attempt]] = {}
            for attempt in rows:
                found.setdefault(attempt.channel, []).append(attempt)
            return found

    async def call_of(self, external_id: str) -> Call:
        """The person's one call (these worlds post one warning)."""
        async with self.runtime.db.sessions() as session:
            call = await session.scalar(
                select(Call)
                .join(Responder, Responder.id == Call.responder_id)
                .where(Responder.external_id == external_id)
            )
            assert call is not None
            return call
