"""What a sender may post: which levels, for which areas, and how often.

Each `[[senders]]` key may be limited to levels (`levels`), to the subtrees of some region
codes (`areas`: a county bureau cannot warn another county) and to a number of warnings a
minute (`max_per_minute`). A geocode outside the sender's areas is refused with 403 naming
it; polygon and circle matches outside them are dropped (`dispatcher.targeting`), since a
drawn shape routinely spills over a border. The rate is counted per sender and clock
minute in Redis, so every API process shares it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.config import SenderSettings
from dispatcher.models import Region
from dispatcher.runtime import Runtime
from dispatcher.targeting import Target, code_forms
from dispatcher.vocabulary import LEVELS
from dispatcher.warning_model import ParsedWarning, WarningRejected

RATE_KEY_PREFIX = "jiaoying:sender-rate:"


def field_of(parsed: ParsedWarning, name: str) -> str:
    """A field as the sender's format names it: "/alert/info/expires" or "expires"."""
    if parsed.source_format != "cap":
        return name
    element = {"areas": "area"}.get(name, name)
    header = name in ("identifier", "sender", "sent", "status", "msgType", "references")
    return f"/alert/{element}" if header else f"/alert/info/{element}"


async def check_rate(runtime: Runtime, sender: SenderSettings) -> None:
    """Count this request against the sender's minute; 429 once past `max_per_minute`."""
    if sender.max_per_minute <= 0:
        return
    now = runtime.clock.now()
    minute = int(now.timestamp() // 60)
    key = f"{RATE_KEY_PREFIX}{sender.name}:{minute}"
    count = int(await runtime.queue.pool.incr(key))
    if count == 1:
        await runtime.queue.pool.expire(key, 120)
    if count > sender.max_per_minute:
        retry_s = 60 - int(now.timestamp()) % 60
        raise WarningRejected(
            f"sender {sender.name!r} may post {sender.max_per_minute} warnings a minute; "
            f"retry in {retry_s} s",
            429,
        )


def check_level(sender: SenderSettings, parsed: ParsedWarning) -> None:
    if sender.levels and parsed.level not in sender.levels and parsed.msg_type != "Cancel":
        allowed = ", ".join(sender.levels)
        raise WarningRejected(
            f"sender {sender.name!r} may not send {parsed.level} ({LEVELS[parsed.level]}) "
            f"warnings; allowed: {allowed}",
            403,
            field_of(parsed, "level"),
        )


async def allowed_paths(session: AsyncSession, sender: SenderSettings) -> list[str] | None:
    """The region paths whose subtrees the sender may warn; None when it may warn anywhere."""
    if not sender.areas:
        return None
    forms = {form for code in sender.areas for form in code_forms(code)}
    paths = await session.scalars(select(Region.path).where(Region.code.in_(forms)))
    return list(paths)


def _statistical_prefix(code: str) -> str:
    """441799000000 -> 441799, 441799100000 -> 441799100: the digits a code's area owns."""
    padded = code.ljust(12, "0") if len(code) in (6, 9) else code
    if len(padded) == 12:
        for keep in (6, 9):
            if padded[keep:] == "0" * (12 - keep):
                return padded[:keep]
    return code


def check_areas(
    sender: SenderSettings,
    parsed: ParsedWarning,
    target: Target,
    paths: list[str] | None,
) -> None:
    """403 naming the first geocode outside the sender's areas.

    A geocode that names a region of the directory must lie in an allowed subtree. One that
    names no region is judged by its statistical code: it must fall under an allowed code.
    """
    if paths is None:
        return
    outside = [value for value, _, path in target.by_geocode if not _under(path, paths)]
    prefixes = [_statistical_prefix(code) for code in sender.areas]
    for value in target.unknown_codes:
        digits = value.strip()
        statistical = digits.isdigit() and len(digits) in (6, 9, 12)
        if statistical and not any(_statistical_prefix(digits).startswith(p) for p in prefixes):
            outside.append(value)
    if outside:
        allowed = ", ".join(sender.areas)
        raise WarningRejected(
            f"sender {sender.name!r} may not warn area {outside[0]} "
            f"(allowed: {allowed} and the regions under them)",
            403,
            field_of(parsed, "areas"),
        )


def _under(path: str, paths: list[str]) -> bool:
    return any(path.startswith(prefix) for prefix in paths)
