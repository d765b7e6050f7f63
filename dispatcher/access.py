"""Who is looking, and what they may see: roles and region scope for every read.

An `Access` is built per request from the logged-in user. `admin` sees and does
everything; a `supervisor` sees only the subtree of their region (lists, pages, exports,
live updates, API reads) and may record answers there; a `viewer` reads only, and never
sees a whole phone number. Rows outside the scope are not there: a warning with nothing
in the scope is a 404, exactly like a warning that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.models import Broadcast, Call, Region, Speaker, Warning
from dispatcher.phones import mask_phone


@dataclass(frozen=True)
class Access:
    user_id: int
    username: str
    role: str  # admin | supervisor | viewer
    region_code: str | None = None
    region_name: str | None = None
    # The scope's materialised path ("/441799000000/441799100000/"); None: everything.
    region_path: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "supervisor")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_phones(self) -> bool:
        return self.role != "viewer"

    def phone(self, value: str) -> str:
        """The number as this user may see it: whole, or masked for viewers."""
        return value if self.sees_phones else mask_phone(value)

    def address(self, value: str) -> str:
        return self.phone(value) if value.startswith("+") else value

    def covers(self, path: str) -> bool:
        return self.region_path is None or path.startswith(self.region_path)

    def region_ids(self) -> Select[Any] | None:
        """The ids of the regions in scope as a subquery, or None for everything."""
        if self.region_path is None:
            return None
        return select(Region.id).where(Region.path.startswith(self.region_path, autoescape=True))

    def regions(self) -> Any:
        """A condition on `Region` for the scope (always true for everything)."""
        if self.region_path is None:
            return Region.id.is_not(None)
        return Region.path.startswith(self.region_path, autoescape=True)


def region_condition(column: Any, access: Access) -> Any:
    """`column` (a region id) lies in the scope; always true when the scope is everything."""
    ids = access.region_ids()
    return column.is_not(None) if ids is None else column.in_(ids)


def speaker_condition(access: Access) -> Any:
    """A broadcast's speaker stands in the scope."""
    ids = access.region_ids()
    if ids is None:
        return Broadcast.id.is_not(None)
    return Broadcast.speaker_id.in_(select(Speaker.id).where(Speaker.region_id.in_(ids)))


def warning_condition(access: Access) -> Any:
    """The warning reached someone or some speaker in the scope."""
    ids = access.region_ids()
    if ids is None:
        return Warning.id.is_not(None)
    calls = exists().where(Call.warning_id == Warning.id, Call.region_id.in_(ids))
    broadcasts = exists().where(Broadcast.warning_id == Warning.id, speaker_condition(access))
    return calls | broadcasts


async def visible_warning(session: AsyncSession, access: Access, warning_id: int) -> Warning | None:
    """The warning when it exists and touches the scope, else None (show 404 either way)."""
    return await session.scalar(
        select(Warning).where(Warning.id == warning_id, warning_condition(access))
    )
