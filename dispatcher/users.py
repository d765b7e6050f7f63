"""Dashboard users: adding them (`jiaoying user add`) and checking a password at login.

Passwords are kept as argon2id hashes (argon2-cffi); a hash made with older parameters is
replaced at the next successful login. A supervisor is tied to a region and sees only its
subtree; a viewer may be tied to one too; an admin sees everything.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.models import Region, User

USER_ROLES = ("admin", "supervisor", "viewer")
MIN_PASSWORD_LENGTH = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class UserRefused(ValueError):
    """The user cannot be added as asked; the message says why."""


async def add_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: str,
    region_code: str | None,
    now: datetime,
) -> User:
    if not _USERNAME.match(username):
        raise UserRefused("username: 2-64 letters, digits or _.@-")
    if role not in USER_ROLES:
        raise UserRefused(f"role: one of {', '.join(USER_ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserRefused(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if role == "admin" and region_code:
        raise UserRefused("region: an admin sees every region; leave --region out")
    if role == "supervisor" and not region_code:
        raise UserRefused("region: a supervisor needs --region CODE (the subtree they oversee)")
    region_id = None
    if region_code:
        region_id = await session.scalar(select(Region.id).where(Region.code == region_code))
        if region_id is None:
            raise UserRefused(f"region: no region with code {region_code} (import it first)")
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserRefused(f"username: {username} exists already")
    user = User(
        username=username,
        password_hash=_hasher.hash(password),
        role=role,
        region_id=region_id,
        active=True,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return user


async def authenticate(session: AsyncSession, username: str, password: str) -> User | None:
    """The active user with this name and password, or None."""
    user = await session.scalar(select(User).where(User.username == username.strip()))
    if user is None or not user.active:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


DEMO_USERNAME = "demo"


async def demo_admin(session: AsyncSession, now: datetime) -> tuple[str, str]:
    """The demo's admin with a fresh random password (made anew on every demo run)."""
    password = secrets.token_urlsafe(9)
    user = await session.scalar(select(User).where(User.username == DEMO_USERNAME))
    if user is None:
        await add_user(
            session,
            username=DEMO_USERNAME,
            password=password,
            role="admin",
            region_code=None,
            now=now,
        )
    else:
        user.password_hash, user.role, user.active = _hasher.hash(password), "admin", True
    return DEMO_USERNAME, password
