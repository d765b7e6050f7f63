"""Audit events: every state change on record (有叫有应有记录)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.models import AuditEvent


def record(
    session: AsyncSession,
    at: datetime,
    kind: str,
    *,
    warning_id: int | None = None,
    call_id: int | None = None,
    actor: str = "system",
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            **audit_row(
                at, kind, warning_id=warning_id, call_id=call_id, actor=actor, detail=detail
            )
        )
    )


def audit_row(
    at: datetime,
    kind: str,
    *,
    warning_id: int | None = None,
    call_id: int | None = None,
    actor: str = "system",
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit event as a row, for a caller inserting many at once."""
    return {
        "at": at,
        "kind": kind,
        "warning_id": warning_id,
        "call_id": call_id,
        "actor": actor,
        "detail": detail or {},
    }
