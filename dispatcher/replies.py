"""Reading what people text back: `1`, `收到`, `2 求助`, `3`, `4 12`, `1 K7`, `完成 K7`.

`read_reply(text)` normalises the text (full-width to half-width, traditional to
simplified characters, punctuation and spacing, case) and reads a status, an optional
number of people (for `4 N` 已转移 N 人), an optional short code naming one call or task,
or `完成` finishing a door-knock task. A help word anywhere makes it a help request: a
missed call for help costs more than a supervisor's wasted phone call.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from dispatcher.vocabulary import Meaning

# The few traditional characters that appear in answers, and their simplified forms.
_TRADITIONAL = str.maketrans("確認轉幫號碼離員個謝對門無崗處", "确认转帮号码离员个谢对门无岗处")
_PUNCTUATION = re.compile(r"[\s\.,;:!?，。；：！？、~\-…·\"'“”‘’()（）\[\]【】《》<>/]+")

VERBS: dict[str, str] = {
    **dict.fromkeys(
        ["1", "收到", "已收到", "确认", "确认收到", "明白", "好的", "好", "知道了", "知道"],
        Meaning.RECEIVED,
    ),
    **dict.fromkeys(["ok", "okay", "y", "yes", "received"], Meaning.RECEIVED),
    **dict.fromkeys(["2", "求助", "需要支援", "需要帮助", "帮助", "支援", "help"], Meaning.HELP),
    **dict.fromkeys(["3", "已部署", "部署", "已到岗", "到岗", "在岗"], Meaning.ON_DUTY),
    **dict.fromkeys(["4", "已转移", "转移", "已撤离", "撤离"], Meaning.EVACUATED),
    **dict.fromkeys(["完成", "已完成", "任务完成", "完毕"], "done"),
}
HELP_ANYWHERE = ("求助", "需要支援", "需要帮助", "救命", "sos")
_VERB = re.compile("|".join(re.escape(v) for v in sorted(VERBS, key=len, reverse=True)))
_CODE = re.compile(r"(?<![a-z])([a-z][0-9]|n[0-9]{1,6})(?![a-z0-9])")
_COUNT = re.compile(r"^(\d{1,6})\s*(?:人|名|口)?")
MAX_PEOPLE = 100_000


@dataclass(frozen=True)
class Reply:
    """What a text says. `meaning` None and `done` False: not understood (see `problem`)."""

    meaning: str | None = None
    people: int | None = None
    code: str | None = None
    done: bool = False
    problem: str | None = None


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().translate(_TRADITIONAL)
    return _PUNCTUATION.sub(" ", text).strip()


def read_reply(raw: str) -> Reply:
    text = normalize(raw)
    code = None
    if found := _CODE.search(text):
        code = found.group(1).upper()
        text = (text[: found.start()] + " " + text[found.end() :]).strip()
    verb = _VERB.match(text)
    wants_help = any(word in text for word in HELP_ANYWHERE)
    if verb is None:
        if wants_help:
            return Reply(meaning=Meaning.HELP, code=code)
        return Reply(code=code, problem="unclear")
    meaning = VERBS[verb.group(0)]
    rest = text[verb.end() :].strip()
    count = _COUNT.match(rest)
    people = int(count.group(1)) if count else None
    if wants_help or meaning == Meaning.HELP:
        return Reply(meaning=Meaning.HELP, code=code)
    if meaning == "done":
        return Reply(done=True, code=code)
    if meaning == Meaning.EVACUATED:
        if people is None:
            return Reply(code=code, problem="evacuated_without_count")
        if people > MAX_PEOPLE:
            return Reply(code=code, problem="too_many_people")
        return Reply(meaning=meaning, people=people, code=code)
    if people is not None:  # "12" is not "1": ask rather than guess
        return Reply(code=code, problem="unclear")
    return Reply(meaning=meaning, code=code)
