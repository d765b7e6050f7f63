"""Settings of the providers (`[providers.<name>]`) and of failover (`[failover]`).

Each provider has its own section, read by its factory in `channels/registry.py` as a
plain mapping; `rate_per_s` / `<channel>_rate_per_s` fields set its rate limit. To add a
provider, add its section to `ProvidersSettings` (and to `PROVIDER_CHANNELS` if it
carries only some channels).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# (count, window seconds): at most `count` sends to one recipient in any `window`.
RecipientLimits = list[tuple[int, float]]


class CallbackGuard(Section):
    """How a provider's unsigned callbacks are protected (see README, "Callbacks")."""

    # The callback URL is /hooks/<channel>/<provider>/<callback_token>; any other path is
    # refused. Required for providers whose callbacks carry no signature.
    callback_token: str = ""
    # When set, callbacks are taken only from these addresses or networks ("1.2.3.0/24").
    callback_allow_ips: list[str] = []

    @field_validator("callback_allow_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {entry!r}") from None
        return value

    @field_validator("callback_token")
    @classmethod
    def _path_safe(cls, value: str) -> str:
        if value and (len(value) < 16 or not value.replace("-", "").replace("_", "").isalnum()):
            raise ValueError("callback_token needs 16 or more letters, digits, '-' or '_'")
        return value


class SimulatedProviderSettings(Section):
    """How the simulated recipients behave (demo, drills, tests)."""

    delivery_rate: float = Field(0.97, ge=0, le=1)
    answer_rate: float = Field(0.8, ge=0, le=1)
    help_rate: float = Field(0.05, ge=0, le=1)
    speaker_fail_rate: float = Field(0.05, ge=0, le=1)
    min_delay_s: float = Field(1.0, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    seed: int = 1
    # Off: only answers call back, no delivery receipts (the benchmark's zero-latency
    # mode, where a receipt per message would double the callbacks measured).
    delivery_receipts: bool = True
    # Messages one batch request carries (1: no batch API, one request per message).
    max_batch: int = Field(100, ge=1, le=1000)

    @model_validator(mode="after")
    def _delays_in_order(self) -> SimulatedProviderSettings:
        if self.max_delay_s < self.min_delay_s:
            raise ValueError("max_delay_s must be >= min_delay_s")
        return self


class TwilioSettings(Section):
    """One Twilio account, used for SMS and voice."""

    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    # Tests and drills point this at a local fake of Twilio's API.
    base_url: str = "https://api.twilio.com"
    voice_language: str = "zh-CN"
    voice: str = ""
    # Messages/calls per second this account may start (0 = no limit).
    sms_rate_per_s: float = Field(1.0, ge=0)
    voice_rate_per_s: float = Field(1.0, ge=0)
    ring_timeout_s: int = Field(45, ge=5, le=600)
    gather_timeout_s: int = Field(8, ge=1, le=60)
    machine_detection: bool = True
    # Destinations Twilio carries no replies from: texts there carry the answer link and
    # do not ask for a reply.
    one_way_prefixes: list[str] = ["+86"]
    # Twilio retries a callback this many times on a 5xx (connection override `#rc=`).
    callback_retries: int = Field(3, ge=0, le=5)
    # SMS validity period (seconds) Twilio keeps a queued message (max 36,000).
    validity_period_s: int = Field(3600, ge=1, le=36000)


class AliyunSettings(CallbackGuard):
    """One Aliyun account: SMS (dysmsapi) and voice notifications (dyvmsapi)."""

    access_key_id: str = ""
    access_key_secret: str = ""
    # Tests and drills point these at a local fake of Aliyun's APIs.
    sms_base_url: str = "https://dysmsapi.aliyuncs.com"
    sms_sign_name: str = ""
    # An approved template made of one variable (`sms_text_param`) holding the message.
    sms_template_code: str = ""
    sms_text_param: str = "content"
    sms_rate_per_s: float = Field(50.0, ge=0)
    sms_recipient_limits: RecipientLimits = []
    voice_base_url: str = "https://dyvmsapi.aliyuncs.com"
    voice_tts_code: str = ""
    voice_text_param: str = "content"
    # The number shown to the callee (empty with a template on the public number pool).
    voice_show_number: str = ""
    voice_volume: int = Field(100, ge=0, le=100)
    voice_rate_per_s: float = Field(10.0, ge=0)
    # Aliyun allows one callee 1 call a minute, 5 an hour, 20 a day.
    voice_recipient_limits: RecipientLimits = [(1, 60), (5, 3600), (20, 86400)]


class TencentSettings(CallbackGuard):
    """One Tencent Cloud SMS application."""

    secret_id: str = ""
    secret_key: str = ""
    sms_sdk_app_id: str = ""
    sign_name: str = ""
    # An approved template with one variable ({1}) holding the message.
    template_id: str = ""
    region: str = "ap-guangzhou"
    base_url: str = "https://sms.tencentcloudapi.com"
    rate_per_s: float = Field(50.0, ge=0)
    recipient_limits: RecipientLimits = []


class WeComSettings(CallbackGuard):
    """One WeCom (企业微信) self-built app: cards out, button taps back."""

    corp_id: str = ""
    corp_secret: str = ""
    agent_id: int = 0
    # The app's "接收消息" Token and EncodingAESKey (43 characters).
    token: str = ""
    encoding_aes_key: str = ""
    base_url: str = "https://qyapi.weixin.qq.com"
    rate_per_s: float = Field(20.0, ge=0)
    # WeCom silently drops messages past 30 a minute and 1,000 an hour to one member.
    recipient_limits: RecipientLimits = [(30, 60), (1000, 3600)]


class SpeakerHttpSettings(Section):
    """A speaker platform with a JSON HTTP API (see README, "Speakers")."""

    base_url: str = "http://127.0.0.1:9000"
    api_key: str = ""
    callback_secret: str = ""
    volume: int = Field(80, ge=0, le=100)
    rate_per_s: float = Field(0, ge=0)


class SpeakerMqttSettings(Section):
    """4G/IP speakers on an MQTT broker: a command topic per speaker, reports back."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: str = ""
    topic_prefix: str = "jiaoying/speakers"
    volume: int = Field(80, ge=0, le=100)
    rate_per_s: float = Field(0, ge=0)


class ProvidersSettings(Section):
    simulated: SimulatedProviderSettings = SimulatedProviderSettings()
    twilio: TwilioSettings = TwilioSettings()
    aliyun: AliyunSettings = AliyunSettings()
    tencent: TencentSettings = TencentSettings()
    wecom: WeComSettings = WeComSettings()
    speaker_http: SpeakerHttpSettings = SpeakerHttpSettings()
    speaker_mqtt: SpeakerMqttSettings = SpeakerMqttSettings()

    def rate_per_s(self, provider: str, channel: str) -> float:
        """Sends per second this provider may start on this channel (0 = no limit)."""
        section = getattr(self, provider, None)
        for field in (f"{channel}_rate_per_s", "rate_per_s"):
            value = getattr(section, field, None)
            if value is not None:
                return float(value)
        return 0.0


# Providers that carry only some channels (the rest carry any).
PROVIDER_CHANNELS: dict[str, tuple[str, ...]] = {
    "twilio": ("sms", "voice"),
    "aliyun": ("sms", "voice"),
    "tencent": ("sms",),
    "wecom": ("wechat",),
    "speaker_http": ("speaker",),
    "speaker_mqtt": ("speaker",),
}


def provider_problems(providers: ProvidersSettings, uses: dict[str, set[str]]) -> list[str]:
    """What is missing for the domestic providers in use (`uses`: provider -> channels)."""
    problems: list[str] = []
    aliyun, tencent, wecom = providers.aliyun, providers.tencent, providers.wecom
    if "aliyun" in uses:
        if not (aliyun.access_key_id and aliyun.access_key_secret):
            problems.append("providers.aliyun needs access_key_id and access_key_secret")
        if "sms" in uses["aliyun"] and not (aliyun.sms_sign_name and aliyun.sms_template_code):
            problems.append("providers.aliyun needs sms_sign_name and sms_template_code")
        if "voice" in uses["aliyun"] and not aliyun.voice_tts_code:
            problems.append("providers.aliyun needs voice_tts_code for voice calls")
        if not aliyun.callback_token:
            problems.append("providers.aliyun needs callback_token (its pushes are unsigned)")
    if "tencent" in uses:
        if not all(
            (tencent.secret_id, tencent.secret_key, tencent.sms_sdk_app_id, tencent.template_id)
        ):
            problems.append(
                "providers.tencent needs secret_id, secret_key, sms_sdk_app_id and template_id"
            )
        if not tencent.callback_token:
            problems.append("providers.tencent needs callback_token (its callbacks are unsigned)")
    if "wecom" in uses:
        if not (wecom.corp_id and wecom.corp_secret and wecom.agent_id):
            problems.append("providers.wecom needs corp_id, corp_secret and agent_id")
        if not wecom.token or len(wecom.encoding_aes_key) != 43:
            problems.append("providers.wecom needs token and a 43-character encoding_aes_key")
    return problems


class FailoverSettings(Section):
    """The circuit breaker kept per provider (in Redis, shared by every worker)."""

    # This many retryable failures within `window_s` open the circuit ...
    failures_to_open: int = Field(5, ge=1)
    window_s: float = Field(60, gt=0)
    # ... for this long; then one trial send decides whether it closes again.
    open_s: float = Field(60, gt=0)
