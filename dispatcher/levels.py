"""Warning levels: how an incoming warning's blue/yellow/orange/red level is worked out.

China grades warnings by signal colour (蓝/黄/橙/红) or by grade (Ⅳ/Ⅲ/Ⅱ/Ⅰ级, 四/三/二/一级);
CAP grades them by severity (Minor/Moderate/Severe/Extreme). `level_from` prefers the
Chinese grading wherever the warning states it and falls back to CAP severity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dispatcher.vocabulary import level_rank

# Every whole value that names a level, by level. Matching ignores case and surrounding space.
LEVEL_TABLE: dict[str, tuple[str, ...]] = {
    "red": ("红色", "红", "Red", "一级", "Ⅰ级", "I级", "Ⅰ", "I", "特别严重"),
    "orange": ("橙色", "橙", "Orange", "二级", "Ⅱ级", "II级", "Ⅱ", "II", "严重"),
    "yellow": ("黄色", "黄", "Yellow", "三级", "Ⅲ级", "III级", "Ⅲ", "III", "较重"),
    "blue": ("蓝色", "蓝", "Blue", "四级", "Ⅳ级", "IV级", "Ⅳ", "IV", "一般"),
}

# Bare grade numbers; only trusted in a parameter that is known to hold the level.
LEVEL_NUMBERS: dict[str, str] = {"1": "red", "2": "orange", "3": "yellow", "4": "blue"}

# Parameter names (compared case-insensitively) whose value is the level.
LEVEL_PARAMETER_NAMES: frozenset[str] = frozenset(
    name.casefold()
    for name in (
        "level",
        "预警级别",
        "预警等级",
        "signalLevel",
        "color",
        "colour",
        "warningLevel",
        "alertLevel",
        "severityLevel",
    )
)

# CAP severity, the fallback when nothing names a colour or grade. Unknown or missing: blue.
SEVERITY_LEVELS: dict[str, str] = {
    "extreme": "red",
    "severe": "orange",
    "moderate": "yellow",
    "minor": "blue",
    "unknown": "blue",
}

# The CAP severity that corresponds to each level (for a severity given as a colour).
LEVEL_SEVERITIES: dict[str, str] = {
    "red": "Extreme",
    "orange": "Severe",
    "yellow": "Moderate",
    "blue": "Minor",
}

_WORDS: dict[str, str] = {
    word.casefold(): level for level, words in LEVEL_TABLE.items() for word in (level, *words)
}

# Level words inside free text (event, headline). English colours count only in phrases such
# as "Red Warning" or "Code Orange": "Red Flag Warning", "Amber Alert" and "Blue Alert" are US
# alert types, not levels.
_TEXT_LEVEL = re.compile(
    r"(?P<zh>红色|橙色|黄色|蓝色)"
    r"|(?<![一二三四五六七八九十])(?P<grade>[一二三四]级)"
    r"|(?<![A-Za-z\u2160-\u217f])(?P<roman>IV|III|II|I|Ⅳ|Ⅲ|Ⅱ|Ⅰ)\s*级"
    r"|\b(?P<colour>red|orange|yellow|blue)\s+(?:warning|signal|level)\b"
    r"|\bcode\s+(?P<code>red|orange|yellow|blue)\b",
    re.IGNORECASE,
)

# "将暴雨黄色预警信号升级为橙色": the level after the last such phrase is the current one.
_CHANGE = re.compile(
    r"(?:升级|降级|调整|更新|变更|升|降|改)为|\b(?:upgraded|downgraded|raised|lowered|changed)\s+to\b",
    re.IGNORECASE,
)


def colour_of(value: str) -> str | None:
    """The level a whole value names ("红色", "橙", "Red", "Ⅱ级", "三级", "较重"...), or None."""
    return _WORDS.get(re.sub(r"\s+", "", value).casefold())


def parse_level(value: str) -> str | None:
    """The level in the value of a level parameter: any spelling `colour_of` knows, a bare
    grade number 1-4, or a level word inside a longer value ("红色预警", "Ⅰ级（特别严重）")."""
    stripped = value.strip()
    return colour_of(stripped) or LEVEL_NUMBERS.get(stripped) or level_in_text(stripped)


def level_in_text(text: str) -> str | None:
    """The level that free text (an event name or a headline) states, or None.

    Recognises 红色/橙色/黄色/蓝色, 一级..四级, Ⅰ级..Ⅳ级 (also written I级..IV级) and English
    phrases such as "Red Warning" or "Code Orange". When the text changes a level ("升级为",
    "降级为", "调整为", "upgraded to"...), only what follows the last change counts; otherwise
    the highest level mentioned wins (a headline may announce several signals at once).
    """
    matches = list(_TEXT_LEVEL.finditer(text))
    changes = list(_CHANGE.finditer(text))
    if changes:
        after = [match for match in matches if match.start() >= changes[-1].end()]
        matches = after or matches
    levels = [_WORDS[_token(match)] for match in matches]
    return max(levels, key=level_rank) if levels else None


def _token(match: re.Match[str]) -> str:
    if match["roman"]:
        return f"{match['roman']}级".casefold()
    word = match["zh"] or match["grade"] or match["colour"] or match["code"]
    return word.casefold()


def stated_level(
    parameters: Iterable[tuple[str, str]], event: str, headline: str, severity: str | None
) -> str | None:
    """The level a warning states itself, or None when it states none.

    In order, the first that gives an answer wins:
    1. a parameter whose name is in `LEVEL_PARAMETER_NAMES` (预警级别, level, color...) and
       whose value `parse_level` understands;
    2. a severity written as a colour (the Chinese profile's Red/Orange/Yellow/Blue);
    3. a level word in the event or the headline (`level_in_text`).
    """
    for name, value in parameters:
        if name.strip().casefold() in LEVEL_PARAMETER_NAMES:
            level = parse_level(value)
            if level is not None:
                return level
    if severity and (level := colour_of(severity)) is not None:
        return level
    return level_in_text(f"{event}\n{headline}")


def severity_level(severity: str | None) -> str:
    """CAP severity through `SEVERITY_LEVELS`; unknown or missing severity gives blue."""
    return SEVERITY_LEVELS.get((severity or "").strip().casefold(), "blue")


def level_from(
    parameters: Iterable[tuple[str, str]], event: str, headline: str, severity: str | None
) -> str:
    """The level ("blue" | "yellow" | "orange" | "red") of a warning: the one it states
    (`stated_level`), else its CAP severity's (`severity_level`)."""
    stated = stated_level(parameters, event, headline, severity)
    return stated if stated is not None else severity_level(severity)
