"""Reading replies, and refusing ladder and quiet-hours settings that cannot work."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.codes import ALL_CODES, pick_code
from dispatcher.config import ConfigError, settings_from_dict
from dispatcher.replies import read_reply


@pytest.mark.parametrize(
    ("text", "meaning", "people", "code"),
    [
        ("1", "received", None, None),
        ("１", "received", None, None),
        (" 收到！", "received", None, None),
        ("已收到。", "received", None, None),
        ("明白", "received", None, None),
        ("好的", "received", None, None),
        ("確認", "received", None, None),
        ("OK", "received", None, None),
        ("y", "received", None, None),
        ("1 K7", "received", None, "K7"),
        ("１ｋ７", "received", None, "K7"),
        ("K7，1", "received", None, "K7"),
        ("2", "help", None, None),
        ("２ 需要支援", "help", None, None),
        ("1 求助", "help", None, None),  # a help word anywhere is a help request
        ("3", "on_duty", None, None),
        ("已部署 B4", "on_duty", None, "B4"),
        ("4 12", "evacuated", 12, None),
        ("４　１２人", "evacuated", 12, None),
        ("已轉移12人", "evacuated", 12, None),
        ("4 12 K7", "evacuated", 12, "K7"),
    ],
)
def test_replies_are_normalised_and_read(
    text: str, meaning: str, people: int | None, code: str | None
) -> None:
    reply = read_reply(text)
    assert (reply.meaning, reply.people, reply.code, reply.done) == (meaning, people, code, False)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("4", "evacuated_without_count"), ("12", "unclear"), ("你好", "unclear"), ("", "unclear")],
)
def test_unclear_replies_say_why(text: str, problem: str) -> None:
    reply = read_reply(text)
    assert reply.meaning is None and not reply.done and reply.problem == problem


def test_finishing_a_task_by_text() -> None:
    assert read_reply("完成 K7") == read_reply("已完成，k7") == read_reply("完成K7")
    assert read_reply("完成 K7").done and read_reply("完成 K7").code == "K7"
    assert read_reply("完成").done and read_reply("完成").code is None


def test_codes_stay_unique_among_what_is_open() -> None:
    taken: list[str] = []
    for seed in range(len(ALL_CODES)):
        taken.append(pick_code(seed, taken))
    assert len(set(taken)) == len(ALL_CODES)
    assert pick_code(5, taken) == "N5"  # more open calls than codes: never a repeat


def _ladder(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"policies": {"red": {"channels": ["sms"], "answer_within_min": 5, "ladder": steps}}}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (_ladder({"step": "notify_up", "at_min": 5}), ["policies.red", "step 1 (notify_up)"]),
        (
            _ladder({"step": "call_backup", "at_min": 5}, {"step": "call_again", "at_min": 9}),
            ["policies.red", "step 2 (call_again)", "channels"],
        ),
        (
            _ladder({"step": "door_knock", "at_min": 5, "channels": ["sms"]}),
            ["step 1 (door_knock)", "no channels"],
        ),
        (
            _ladder({"step": "notify_up", "at_min": 5, "level": "village"}),
            ["step 1 (notify_up)", "'village'"],
        ),
        (_ladder({"step": "shout", "at_min": 5}), ["policies.red.ladder.0.step"]),
        (
            _ladder({"step": "door_knock", "at_min": 5}, {"step": "door_knock", "at_min": 6}),
            ["at most one door_knock"],
        ),
        ({"quiet_hours": {"levels": ["blue", "red"]}}, ["quiet_hours.levels", "never deferred"]),
        ({"quiet_hours": {"start": "25:00"}}, ["quiet_hours.start"]),
        ({"quiet_hours": {"timezone": "Mars/Olympus"}}, ["quiet_hours.timezone"]),
    ],
)
def test_bad_ladders_are_refused_at_start_up(raw: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_dict(raw, env={})
    for word in words:
        assert word in str(error.value)


def test_a_good_ladder_with_notify_up_loads() -> None:
    settings = settings_from_dict(
        _ladder(
            {"step": "call_again", "at_min": 5, "channels": ["voice"]},
            {"step": "notify_up", "at_min": 30, "level": "county"},
        ),
        env={},
    )
    step = settings.policy_for("red").ladder[1]
    assert step.notify_roles() == ["county_duty"]
