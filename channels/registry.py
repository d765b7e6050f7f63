"""Builds the providers named in config, failing fast on a name nobody registered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from channels.base import Channel, Provider, ProviderContext
from channels.simulated import DEFAULT_MAX_BATCH, SimulatedBehaviour, SimulatedProvider

# A factory gets the channel, that provider's settings (a plain mapping) and the context.
ProviderFactory = Callable[[Channel, Mapping[str, Any], ProviderContext], Provider]


def _simulated(channel: Channel, settings: Mapping[str, Any], context: ProviderContext) -> Provider:
    behaviour = {key: value for key, value in settings.items() if key != "max_batch"}
    max_batch = int(settings.get("max_batch", DEFAULT_MAX_BATCH))
    return SimulatedProvider(channel, SimulatedBehaviour(**behaviour), context, max_batch)


def _twilio(channel: Channel, settings: Mapping[str, Any], context: ProviderContext) -> Provider:
    # Imported here: only a deployment that uses Twilio loads the library.
    if channel is Channel.SMS:
        from channels.twilio_sms import TwilioSmsProvider

        return TwilioSmsProvider(settings, context)
    if channel is Channel.VOICE:
        from channels.twilio_voice import TwilioVoiceProvider

        return TwilioVoiceProvider(settings, context)
    raise ValueError(f"twilio carries sms and voice, not {channel.value}")


def _aliyun(channel: Channel, settings: Mapping[str, Any], context: ProviderContext) -> Provider:
    if channel is Channel.SMS:
        from channels.aliyun_sms import AliyunSmsProvider

        return AliyunSmsProvider(settings, context)
    if channel is Channel.VOICE:
        from channels.aliyun_voice import AliyunVoiceProvider

        return AliyunVoiceProvider(settings, context)
    raise ValueError(f"aliyun carries sms and voice, not {channel.value}")


def _tencent(channel: Channel, settings: Mapping[str, Any], context: ProviderContext) -> Provider:
    from channels.tencent_sms import TencentSmsProvider

    if channel is not Channel.SMS:
        raise ValueError(f"tencent carries sms, not {channel.value}")
    return TencentSmsProvider(settings, context)


def _wecom(channel: Channel, settings: Mapping[str, Any], context: ProviderContext) -> Provider:
    from channels.wecom import WeComProvider

    if channel is not Channel.WECHAT:
        raise ValueError(f"wecom carries wechat, not {channel.value}")
    return WeComProvider(settings, context)


def _speaker_http(
    channel: Channel, settings: Mapping[str, Any], context: ProviderContext
) -> Provider:
    from channels.speaker_http import HttpSpeakerProvider

    _speakers_only("speaker_http", channel)
    return HttpSpeakerProvider(settings, context)


def _speaker_mqtt(
    channel: Channel, settings: Mapping[str, Any], context: ProviderContext
) -> Provider:
    from channels.speaker_mqtt import MqttSpeakerProvider

    _speakers_only("speaker_mqtt", channel)
    return MqttSpeakerProvider(settings, context)


def _speakers_only(name: str, channel: Channel) -> None:
    if channel is not Channel.SPEAKER:
        raise ValueError(f"{name} drives speakers, not {channel.value}")


FACTORIES: dict[str, ProviderFactory] = {
    "simulated": _simulated,
    "twilio": _twilio,
    "aliyun": _aliyun,
    "tencent": _tencent,
    "wecom": _wecom,
    "speaker_http": _speaker_http,
    "speaker_mqtt": _speaker_mqtt,
}


class UnknownProvider(ValueError):
    pass


def build_provider(
    name: str, channel: Channel, settings: Mapping[str, Any], context: ProviderContext
) -> Provider:
    try:
        factory = FACTORIES[name]
    except KeyError:
        known = ", ".join(sorted(FACTORIES))
        raise UnknownProvider(
            f"unknown provider {name!r} for channel {channel.value}; known: {known}"
        ) from None
    return factory(channel, settings, context)
