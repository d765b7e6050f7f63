"""The words of the domain in one place: levels, roles, states and their Chinese labels."""

from __future__ import annotations

from enum import StrEnum

# Ordered from least to most severe.
LEVELS: dict[str, str] = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}

ROLES: dict[str, str] = {
    "grid_worker": "网格员",
    "village_cadre": "村（社区）干部",
    "township_leader": "乡镇（街道）领导",
    "township_duty": "乡镇值班员",
    "county_duty": "县应急值班员",
    "county_leader": "县领导",
}

REGION_LEVELS: dict[str, str] = {
    "county": "区县",
    "township": "乡镇/街道",
    "village": "村/社区",
    "grid": "网格",
}


def level_rank(level: str) -> int:
    return list(LEVELS).index(level)


class WarningState(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"  # an Update replaced it
    CANCELLED = "cancelled"  # a Cancel lifted it (or it is itself a Cancel)
    EXPIRED = "expired"  # its `expires` passed while it was active


WARNING_STATE_LABELS: dict[str, str] = {
    "active": "生效中",
    "superseded": "已更新",
    "cancelled": "已解除",
    "expired": "已过期",
}
DRILL_MARK = "【演练】"


class CallState(StrEnum):
    PENDING = "pending"
    CALLING = "calling"
    ANSWERED = "answered"
    ESCALATED = "escalated"
    UNANSWERED = "unanswered"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # carried on by the same person's call on the Update


# Calls in these states still wait for an answer and may escalate.
OPEN_CALL_STATES = (CallState.PENDING, CallState.CALLING, CallState.ESCALATED)
# Calls that can still be answered (an unanswered call's person may answer late).
ANSWERABLE_CALL_STATES = (*OPEN_CALL_STATES, CallState.UNANSWERED)

CALL_STATE_LABELS: dict[str, str] = {
    "pending": "待发送",
    "calling": "呼叫中",
    "answered": "已应答",
    "escalated": "升级中",
    "unanswered": "未应答",
    "cancelled": "已取消",
    "expired": "已过期",
    "superseded": "已更新",
}


class AttemptStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class AttemptPurpose(StrEnum):
    CALL = "call"  # asks the responder to answer
    NOTICE = "notice"  # tells a supervisor who is silent or needs help
    TASK = "task"  # hands a door-knock task to its assignee
    REPLY = "reply"  # answers an inbound text


class BroadcastStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    PLAYED = "played"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DONE = "done"
    UNREACHABLE = "unreachable"
    CANCELLED = "cancelled"


TASK_STATUS_LABELS: dict[str, str] = {
    "open": "待处理",
    "accepted": "已接单",
    "done": "已完成",
    "unreachable": "无法到达",
    "cancelled": "已取消",
}


class Meaning(StrEnum):
    """A responder's status during a warning; it may move on, each change is kept."""

    RECEIVED = "received"  # 1 收到
    HELP = "help"  # 2 求助: an answer and an alert to the supervisor
    ON_DUTY = "on_duty"  # 3 已部署: on duty, measures in place
    EVACUATED = "evacuated"  # 4 N 已转移 N 人


MEANING_LABELS: dict[str, str] = {
    "received": "收到",
    "help": "求助",
    "on_duty": "已部署",
    "evacuated": "已转移",
}


def status_label(meaning: str | None, people: int | None = None) -> str:
    """'已转移12人', '收到', or '' for no answer yet."""
    if meaning is None:
        return ""
    label = MEANING_LABELS.get(meaning, meaning)
    if meaning == Meaning.EVACUATED and people is not None:
        return f"{label}{people}人"
    return label


class HouseholdMark(StrEnum):
    REACHED = "reached"
    NOT_HOME = "not_home"
    EVACUATED = "evacuated"


HOUSEHOLD_MARK_LABELS: dict[str, str] = {
    "reached": "已告知",
    "not_home": "无人在家",
    "evacuated": "已转移",
}

ANSWER_METHOD_LABELS: dict[str, str] = {
    "phone": "电话核实",
    "in_person": "当面核实",
    "other": "其他方式",
}

CHANNEL_LABELS: dict[str, str] = {
    "sms": "短信",
    "wechat": "企业微信",
    "voice": "语音电话",
    "speaker": "应急广播",
    "link": "链接",
    "manual": "人工登记",
}

CIRCUIT_LABELS: dict[str, str] = {
    "closed": "正常",
    "open": "熔断（已切换备用通道）",
    "half_open": "试探恢复中",
}
