"""Which provider carries a send: the route for the address, minus broken providers.

`[channels.<kind>] routes` maps number prefixes to provider lists ("+86" to domestic
providers, everything else to `providers`); the longest matching prefix wins. Along the
route, a provider whose circuit is open (see circuit.py) or that already refused this
message is passed over for the next: that is the failover. Speakers are bound to the
platform named on the speaker, so they have a route of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from channels.base import Provider
from dispatcher.circuit import CircuitBreakers
from dispatcher.config import Settings
from dispatcher.providers import Providers


def route_for(settings: Settings, channel: str, address: str) -> list[str]:
    """Provider names for this address on this channel, in order of preference."""
    chosen = settings.channels.for_channel(channel)
    best = max((p for p in chosen.routes if address.startswith(p)), key=len, default=None)
    return list(chosen.routes[best]) if best is not None else list(chosen.providers)


@dataclass(frozen=True)
class Pick:
    provider: Provider | None
    # All providers on the route are open: try again at this time.
    retry_at: datetime | None = None
    # Why nothing can be picked, for the record (no provider configured or all refused).
    reason: str = ""
    # The provider's circuit is half-open and admits this one send as its trial.
    trial: bool = False


async def pick_provider(
    providers: Providers,
    breakers: CircuitBreakers,
    channel: str,
    route: list[str],
    now: datetime,
    skip: set[str] | None = None,
) -> Pick:
    """The first provider on the route that is configured, not skipped and admits a send."""
    candidates = [
        provider
        for name in route
        if name not in (skip or set()) and (provider := providers.get(channel, name))
    ]
    if not candidates:
        refused = f" (refused by {', '.join(sorted(skip))})" if skip else ""
        return Pick(None, reason=f"no {channel} provider left on route {route}{refused}")
    retry_at: datetime | None = None
    for provider in candidates:
        admission = await breakers.admit(channel, provider.name, now)
        if admission.allowed:
            return Pick(provider, trial=admission.trial)
        if admission.retry_at is not None:
            retry_at = min(retry_at or admission.retry_at, admission.retry_at)
    return Pick(None, retry_at=retry_at or now, reason="every provider's circuit is open")
