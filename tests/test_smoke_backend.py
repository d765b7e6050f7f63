from sqlalchemy import func, select

from dispatcher.db import Database
from dispatcher.models import Region


async def test_database_starts_empty(database: Database) -> None:
    async with database.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Region)) == 0
