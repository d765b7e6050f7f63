"""The providers configured for each channel, built once per process from settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from urllib.parse import urlencode

import httpx

from channels.base import CallbackRequest, Channel, Provider, ProviderContext
from channels.registry import build_provider
from dispatcher.config import Settings

# (channel, provider name, request as a dict, delay in seconds)
CallbackScheduler = Callable[[str, str, dict[str, object], float], Awaitable[None]]


def callback_token(settings: Settings, provider: str) -> str:
    """The secret path token of a provider's callback route ("" when it has none)."""
    return str(getattr(getattr(settings.providers, provider, None), "callback_token", ""))


def callback_url(settings: Settings, channel: str, provider: str) -> str:
    base = settings.app.public_base_url.rstrip("/")
    url = f"{base}/hooks/{channel}/{provider}"
    if path_token := callback_token(settings, provider):
        url += f"/{path_token}"
    if settings.hooks.token:
        url += "?" + urlencode({"token": settings.hooks.token})
    return url


class Providers:
    """Providers by channel, in the order config lists them."""

    def __init__(self, by_channel: dict[Channel, list[Provider]]) -> None:
        self._by_channel = by_channel

    @classmethod
    def build(
        cls, settings: Settings, http: httpx.AsyncClient, schedule: CallbackScheduler
    ) -> Providers:
        by_channel: dict[Channel, list[Provider]] = {}
        for channel in Channel:
            names = settings.channels.for_channel(channel.value).all_providers
            built: list[Provider] = []
            for name in names:
                section = getattr(settings.providers, name, None)
                options = section.model_dump() if section is not None else {}

                async def _schedule(
                    request: CallbackRequest,
                    delay_s: float,
                    _c: str = channel.value,
                    _n: str = name,
                ) -> None:
                    await schedule(_c, _n, asdict(request), delay_s)

                context = ProviderContext(
                    http=http,
                    callback_url=callback_url(settings, channel.value, name),
                    schedule_callback=_schedule,
                )
                built.append(build_provider(name, channel, options, context))
            by_channel[channel] = built
        return cls(by_channel)

    def named(self) -> list[tuple[str, str]]:
        """(channel, provider name) of every configured provider."""
        return [(c.value, p.name) for c, providers in self._by_channel.items() for p in providers]

    def listeners(self) -> list[tuple[str, Provider]]:
        """(channel, provider) of providers that receive reports on their own connection."""
        return [
            (c.value, p)
            for c, providers in self._by_channel.items()
            for p in providers
            if p.flags.listens
        ]

    def for_channel(self, channel: str) -> list[Provider]:
        return self._by_channel.get(Channel(channel), [])

    def first(self, channel: str) -> Provider | None:
        providers = self.for_channel(channel)
        return providers[0] if providers else None

    def get(self, channel: str, name: str) -> Provider | None:
        try:
            wanted = Channel(channel)
        except ValueError:
            return None
        for provider in self._by_channel.get(wanted, []):
            if provider.name == name:
                return provider
        return None

    def inbound_sms(self) -> Provider | None:
        """The SMS provider whose replies arrive at the generic `/hooks/sms/inbound`."""
        for provider in self.for_channel("sms"):
            if provider.flags.receives_replies:
                return provider
        return None

    async def aclose(self) -> None:
        for providers in self._by_channel.values():
            for provider in providers:
                await provider.aclose()
