"""Settings of the providers (`[providers.<name>]`) and of failover (`[failover]`).

Each provider has its own section, read by its factory in `channels/registry.py` as a
plain mapping; `rate_per_s` / `<channel>_rate_per_s` fields set its rate limit. To add a
provider, add its section to `ProvidersSettings` (and to `PROVIDER_CHANNELS` if it
carries only some channels).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatedProviderSettings(Section):
    """How the simulated recipients behave (demo, drills, tests)."""

    delivery_rate: float = Field(0.97, ge=0, le=1)
    answer_rate: float = Field(0.8, ge=0, le=1)
    help_rate: float = Field(0.05, ge=0, le=1)
    speaker_fail_rate: float = Field(0.05, ge=0, le=1)
    min_delay_s: float = Field(1.0, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    seed: int = 1

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
    "speaker_http": ("speaker",),
    "speaker_mqtt": ("speaker",),
}


class FailoverSettings(Section):
    """The circuit breaker kept per provider (in Redis, shared by every worker)."""

    # This many retryable failures within `window_s` open the circuit ...
    failures_to_open: int = Field(5, ge=1)
    window_s: float = Field(60, gt=0)
    # ... for this long; then one trial send decides whether it closes again.
    open_s: float = Field(60, gt=0)
