"""Typed settings, loaded from a TOML file with environment overrides for secrets.

`load_settings(path)` reads the file named by `--config` or `JIAOYING_CONFIG`; with
neither, every setting falls back to the embedded default: SQLite and an embedded Redis
under `./var`, simulated providers, the default escalation policies. Secrets may come from
the environment so they stay out of the file:

    JIAOYING_SECRET_KEY, JIAOYING_DATABASE_URL, JIAOYING_REDIS_URL, JIAOYING_HOOKS_TOKEN,
    JIAOYING_SENDER_<NAME>_SECRET (NAME upper-cased, '-' as '_'),
    JIAOYING_TWILIO_AUTH_TOKEN, JIAOYING_SPEAKER_HTTP_API_KEY,
    JIAOYING_SPEAKER_HTTP_CALLBACK_SECRET, JIAOYING_SPEAKER_MQTT_PASSWORD,
    JIAOYING_ALIYUN_ACCESS_KEY_SECRET, JIAOYING_ALIYUN_CALLBACK_TOKEN,
    JIAOYING_TENCENT_SECRET_KEY, JIAOYING_TENCENT_CALLBACK_TOKEN,
    JIAOYING_WECOM_CORP_SECRET, JIAOYING_WECOM_TOKEN, JIAOYING_WECOM_ENCODING_AES_KEY

Every problem is reported as a `ConfigError` naming the setting, never as a traceback.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dispatcher.config_providers import (
    PROVIDER_CHANNELS,
    FailoverSettings,
    ProvidersSettings,
    provider_problems,
)
from dispatcher.vocabulary import LEVELS, ROLES

__all__ = ["ConfigError", "FailoverSettings", "ProvidersSettings", "Settings"]

PLACEHOLDER_SECRETS = {"", "change-me", "dev-secret-change-me", "dev-insecure-change-me"}
CHANNELS = ("sms", "wechat", "voice", "speaker")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the setting and the problem."""


def _known_levels(value: list[str]) -> list[str]:
    unknown = [level for level in value if level not in LEVELS]
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; levels are {list(LEVELS)}")
    return value


def _known_channels(value: list[str]) -> list[str]:
    unknown = [c for c in value if c not in CHANNELS or c == "speaker"]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; use sms, wechat, voice")
    return value


def _known_roles(value: list[str]) -> list[str]:
    unknown = [r for r in value if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; known: {sorted(ROLES)}")
    return value


# Lists of names checked against the vocabulary wherever a setting takes them.
LevelList = Annotated[list[str], AfterValidator(_known_levels)]
CallChannelList = Annotated[list[str], AfterValidator(_known_channels)]
RoleList = Annotated[list[str], AfterValidator(_known_roles)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSettings(_Section):
    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str = "dev-insecure-change-me"
    display_timezone: str = "Asia/Shanghai"
    log_format: Literal["auto", "json", "text"] = "auto"


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(5_000_000, ge=1024)


class DatabaseSettings(_Section):
    url: str = ""


class RedisSettings(_Section):
    url: str = ""


class WorkerSettings(_Section):
    max_jobs: int = Field(50, ge=1)
    sweep_interval_s: int = Field(10, ge=1, le=60)
    sweep_batch: int = Field(2000, ge=1)
    sweep_parallel: int = Field(2, ge=1, le=16)
    requeue_after_s: int = Field(60, ge=1)
    send_lease_s: int = Field(300, ge=10)
    retry_base_s: float = Field(10, gt=0)
    retry_max_backoff_s: float = Field(300, gt=0)
    retry_max_tries: int = Field(5, ge=1)
    speaker_confirm_timeout_s: int = Field(300, ge=10)


class SenderSettings(_Section):
    """One key that may post warnings, and what it may post."""

    name: str
    secret: str = ""
    cap_senders: list[str] = []
    replay_window_s: int = Field(300, ge=10, le=3600)
    # Levels this sender may send (empty: any); others are refused with 403.
    levels: LevelList = []
    # Region codes whose subtrees this sender may warn (empty: anywhere); a geocode outside
    # them is refused with 403 naming it, polygon/circle matches outside them are dropped.
    areas: list[str] = []
    # Warnings accepted per minute from this sender; more get 429 (0: no limit).
    max_per_minute: int = Field(60, ge=0)

    @field_validator("areas")
    @classmethod
    def _region_codes(cls, value: list[str]) -> list[str]:
        bad = [code for code in value if not code.isdigit() or not 6 <= len(code) <= 20]
        if bad:
            raise ValueError(f"not region codes (6 to 20 digits): {bad}")
        return value


class HooksSettings(_Section):
    token: str = ""


class ChannelSettings(_Section):
    providers: list[str] = ["simulated"]
    # Number prefix -> providers, e.g. {"+86" = ["aliyun", "twilio"]}; the longest
    # matching prefix wins, anything unmatched uses `providers`.
    routes: dict[str, list[str]] = {}

    @field_validator("providers")
    @classmethod
    def _some_provider(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a channel needs at least one provider")
        return value

    @field_validator("routes")
    @classmethod
    def _routes_are_prefixes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for prefix, names in value.items():
            if not prefix or not names:
                raise ValueError(f"route {prefix!r} needs a prefix and at least one provider")
        return value

    @property
    def all_providers(self) -> list[str]:
        """Every provider this channel may use, default list first, each once."""
        names = list(self.providers)
        for route in self.routes.values():
            names += [n for n in route if n not in names]
        return names


class ChannelsSettings(_Section):
    sms: ChannelSettings = ChannelSettings()
    wechat: ChannelSettings = ChannelSettings()
    voice: ChannelSettings = ChannelSettings()
    speaker: ChannelSettings = ChannelSettings()

    def for_channel(self, channel: str) -> ChannelSettings:
        return getattr(self, channel)  # type: ignore[no-any-return]


StepKind = Literal["call_again", "call_backup", "notify_supervisor", "door_knock", "notify_up"]
# Who `notify_up` tells at each region level when the step names no roles.
NOTIFY_UP_ROLES: dict[str, list[str]] = {
    "township": ["township_duty", "township_leader"],
    "county": ["county_duty"],
}


class LadderStep(_Section):
    """One rung: `step` runs `at_min` minutes after the call's first successful send."""

    step: StepKind
    at_min: float = Field(gt=0)
    channels: CallChannelList = []
    # notify_up only: the region level to tell (township or county) and, optionally, roles.
    level: str | None = None
    roles: RoleList = []

    def problem(self) -> str | None:
        """What is wrong with this step's parameters, if anything."""
        if self.step == "call_again" and not self.channels:
            return "call_again needs channels, e.g. channels = ['voice']"
        if self.step != "call_again" and self.channels:
            return f"{self.step} takes no channels (only call_again does)"
        if self.step == "notify_up":
            if self.level not in NOTIFY_UP_ROLES:
                return f"notify_up needs level = 'township' or 'county', not {self.level!r}"
        elif self.level is not None or self.roles:
            return f"{self.step} takes no level or roles (only notify_up does)"
        return None

    def notify_roles(self) -> list[str]:
        return self.roles or NOTIFY_UP_ROLES.get(self.level or "", [])


class Policy(_Section):
    channels: CallChannelList
    answer_within_min: float = Field(gt=0)
    roles: RoleList = []
    ladder: list[LadderStep]
    # A door-knock task nobody accepted within this many minutes goes to the supervisor.
    task_accept_within_min: float = Field(15, gt=0)

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a policy needs at least one channel")
        return value

    @model_validator(mode="after")
    def _ladder_in_order(self) -> Policy:
        times = [s.at_min for s in self.ladder]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("ladder steps must have strictly increasing at_min")
        if times and times[0] < self.answer_within_min:
            raise ValueError("the first ladder step cannot come before answer_within_min")
        for number, step in enumerate(self.ladder, start=1):
            if problem := step.problem():
                raise ValueError(f"ladder step {number} ({step.step}): {problem}")
        if [s.step for s in self.ladder].count("door_knock") > 1:
            raise ValueError("a ladder has at most one door_knock step")
        return self

    def door_knock_index(self) -> int | None:
        for index, step in enumerate(self.ladder):
            if step.step == "door_knock":
                return index
        return None


def _step(kind: StepKind, at_min: float, channels: list[str] | None = None) -> LadderStep:
    return LadderStep(step=kind, at_min=at_min, channels=channels or [])


DEFAULT_POLICIES: dict[str, Policy] = {
    "red": Policy(
        channels=["sms", "wechat", "voice"],
        answer_within_min=5,
        ladder=[
            _step("call_again", 5, ["voice", "sms"]),
            _step("call_backup", 10),
            _step("notify_supervisor", 15),
            _step("door_knock", 20),
        ],
        task_accept_within_min=10,
    ),
    "orange": Policy(
        channels=["sms", "wechat", "voice"],
        answer_within_min=15,
        ladder=[
            _step("call_again", 15, ["voice"]),
            _step("call_backup", 30),
            _step("notify_supervisor", 45),
            _step("door_knock", 60),
        ],
    ),
    "yellow": Policy(
        channels=["sms", "wechat"],
        answer_within_min=30,
        roles=["grid_worker", "village_cadre", "township_leader", "township_duty"],
        ladder=[
            _step("call_again", 30, ["voice"]),
            _step("call_backup", 45),
            _step("notify_supervisor", 60),
        ],
    ),
    "blue": Policy(
        channels=["sms", "wechat"],
        answer_within_min=60,
        roles=["grid_worker", "village_cadre"],
        ladder=[
            _step("call_again", 60, ["sms"]),
            _step("notify_supervisor", 120),
        ],
    ),
}


class QuietHoursSettings(_Section):
    """Night hours in which low-level warnings wait for the morning (never red or orange)."""

    levels: LevelList = []
    start: str = "22:00"
    end: str = "07:00"
    timezone: str = "Asia/Shanghai"

    @field_validator("levels")
    @classmethod
    def _low_levels_only(cls, value: list[str]) -> list[str]:
        urgent = [level for level in value if level in ("red", "orange")]
        if urgent:
            raise ValueError(f"{urgent}: red and orange warnings are never deferred")
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
            raise ValueError(f"{value!r} is not a time of day like '07:00'")
        if int(hours) > 23 or int(minutes) > 59:
            raise ValueError(f"{value!r} is not a time of day like '07:00'")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Settings(_Section):
    app: AppSettings = AppSettings()
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()
    senders: Annotated[list[SenderSettings], Field(default_factory=list)]
    hooks: HooksSettings = HooksSettings()
    channels: ChannelsSettings = ChannelsSettings()
    providers: ProvidersSettings = ProvidersSettings()
    failover: FailoverSettings = FailoverSettings()
    policies: dict[str, Policy] = DEFAULT_POLICIES
    quiet_hours: QuietHoursSettings = QuietHoursSettings()
    # Other geocode schemes: valueName -> {value: region code}, e.g. SAME codes of a feed.
    geocode_aliases: dict[str, dict[str, str]] = {}

    @field_validator("policies")
    @classmethod
    def _every_level(cls, value: dict[str, Policy]) -> dict[str, Policy]:
        _known_levels(list(value))
        return {**DEFAULT_POLICIES, **value}

    @model_validator(mode="after")
    def _known_providers(self) -> Settings:
        known = set(ProvidersSettings.model_fields)
        for channel in CHANNELS:
            for name in self.channels.for_channel(channel).all_providers:
                if name not in known:
                    raise ValueError(
                        f"channels.{channel}: unknown provider {name!r}; known: {sorted(known)}"
                    )
                carries = PROVIDER_CHANNELS.get(name)
                if carries is not None and channel not in carries:
                    raise ValueError(f"channels.{channel}: {name} carries only {carries}")
        twilio = self.providers.twilio
        uses = [
            c for c in ("sms", "voice") if "twilio" in self.channels.for_channel(c).all_providers
        ]
        if uses and not (twilio.account_sid and twilio.auth_token):
            raise ValueError("providers.twilio needs account_sid and auth_token")
        if "voice" in uses and not twilio.from_number:
            raise ValueError("providers.twilio needs from_number for voice calls")
        if "sms" in uses and not (twilio.from_number or twilio.messaging_service_sid):
            raise ValueError("providers.twilio needs from_number or messaging_service_sid")
        used: dict[str, set[str]] = {}
        for channel in CHANNELS:
            for name in self.channels.for_channel(channel).all_providers:
                used.setdefault(name, set()).add(channel)
        if problems := provider_problems(self.providers, used):
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.app.environment != "production":
            return self
        if self.app.secret_key in PLACEHOLDER_SECRETS:
            raise ValueError("app.secret_key must be set to a real secret in production")
        for sender in self.senders:
            if sender.secret in PLACEHOLDER_SECRETS:
                raise ValueError(f"sender {sender.name!r} needs a real secret in production")
        return self

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.app.data_dir / 'jiaoying.db').resolve()}"

    @property
    def effective_senders(self) -> list[SenderSettings]:
        """Configured senders; in development with none configured, one `local` sender."""
        if self.senders or self.app.environment == "production":
            return list(self.senders)
        return [SenderSettings(name="local", secret="dev-secret-change-me")]

    def policy_for(self, level: str) -> Policy:
        return self.policies[level]


def _env_overrides(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    merged = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()
    }

    def put(section: str, key: str, var: str) -> None:
        if env.get(var):
            merged.setdefault(section, {})[key] = env[var]

    put("app", "secret_key", "JIAOYING_SECRET_KEY")
    put("database", "url", "JIAOYING_DATABASE_URL")
    put("redis", "url", "JIAOYING_REDIS_URL")
    put("hooks", "token", "JIAOYING_HOOKS_TOKEN")
    for provider, key in (
        ("twilio", "auth_token"),
        ("speaker_http", "api_key"),
        ("speaker_http", "callback_secret"),
        ("speaker_mqtt", "password"),
        ("aliyun", "access_key_secret"),
        ("aliyun", "callback_token"),
        ("tencent", "secret_key"),
        ("tencent", "callback_token"),
        ("wecom", "corp_secret"),
        ("wecom", "token"),
        ("wecom", "encoding_aes_key"),
    ):
        var = f"JIAOYING_{provider.upper()}_{key.upper()}"
        if env.get(var):
            providers = merged.setdefault("providers", {})
            providers[provider] = {**providers.get(provider, {}), key: env[var]}
    senders = []
    for sender in merged.get("senders", []):
        sender = dict(sender) if isinstance(sender, dict) else sender
        if isinstance(sender, dict) and isinstance(sender.get("name"), str):
            var = "JIAOYING_SENDER_" + sender["name"].upper().replace("-", "_") + "_SECRET"
            if env.get(var):
                sender["secret"] = env[var]
        senders.append(sender)
    if senders:
        merged["senders"] = senders
    return merged


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def settings_from_dict(raw: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    """Build settings from parsed TOML (or any dict), applying environment overrides."""
    try:
        return Settings.model_validate(
            _env_overrides(raw, dict(os.environ if env is None else env))
        )
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load settings from `path`, else from `$JIAOYING_CONFIG`, else the embedded default."""
    env = dict(os.environ if env is None else env)
    chosen = path or env.get("JIAOYING_CONFIG")
    raw: dict[str, Any] = {}
    if chosen:
        file = Path(chosen)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {file} is not valid TOML: {error}") from None
    return settings_from_dict(raw, env)
