"""Builds the providers named in config, failing fast on a name nobody registered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from channels.base import Channel, Provider, ProviderContext
from channels.simulated import SimulatedBehaviour, SimulatedProvider

# A factory gets the channel, that provider's settings (a plain mapping) and the context.
ProviderFactory = Callable[[Channel, Mapping[str, Any], ProviderContext], Provider]


def _simulated(channel: Channel, settings: Mapping[str, Any], context: ProviderContext) -> Provider:
    return SimulatedProvider(channel, SimulatedBehaviour(**settings), context)


FACTORIES: dict[str, ProviderFactory] = {"simulated": _simulated}


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
