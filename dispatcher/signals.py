"""The Chinese warning signals: which event a warning is about, and which colours it can have.

China's meteorological warning signals (气象灾害预警信号, CMA Order No. 16 of 2007, the
signal set the national early-warning release system carries in GB/T 35965.1 messages) each
come in a fixed set of colours: a drought (干旱) warning is orange or red, never blue. The
geological-hazard, mountain-torrent and flood warnings of the other departments use all four.

`signal_of(event, headline)` finds the signal a warning is about from its `<event>` (or,
failing that, its headline), in Chinese or in English. When a warning names no colour the
level comes from CAP severity (see `dispatcher.levels`), and `fit_level` then moves it into
the signal's colours: the lowest colour the signal has when the severity maps below it,
the highest when above. So a drought warning with severity Minor is orange, and a frost
(霜冻) warning with severity Extreme is orange, the highest frost signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.vocabulary import LEVELS, level_rank

ALL_LEVELS: tuple[str, ...] = tuple(LEVELS)  # blue, yellow, orange, red


@dataclass(frozen=True)
class Signal:
    name: str  # the event as Chinese warnings name it: 暴雨
    english: tuple[str, ...]  # lower-case English names seen in feeds
    levels: tuple[str, ...]  # the colours this signal has, blue to red
    kind: str  # meteorological | geological | flood


def _met(name: str, english: tuple[str, ...], levels: tuple[str, ...] = ALL_LEVELS) -> Signal:
    return Signal(name, english, levels, "meteorological")


SIGNALS: tuple[Signal, ...] = (
    _met("台风", ("typhoon", "tropical cyclone")),
    _met("暴雨", ("rainstorm", "heavy rain")),
    _met("暴雪", ("blizzard", "snowstorm", "heavy snow")),
    _met("寒潮", ("cold wave",)),
    _met("大风", ("gale", "strong wind", "high wind")),
    _met("沙尘暴", ("sandstorm", "dust storm"), ("yellow", "orange", "red")),
    _met("高温", ("heat wave", "high temperature", "excessive heat"), ("yellow", "orange", "red")),
    _met("干旱", ("drought",), ("orange", "red")),
    _met("雷电", ("lightning", "thunderstorm"), ("yellow", "orange", "red")),
    _met("冰雹", ("hail",), ("orange", "red")),
    _met("霜冻", ("frost",), ("blue", "yellow", "orange")),
    _met("大雾", ("heavy fog", "dense fog", "fog"), ("yellow", "orange", "red")),
    _met("霾", ("haze", "smog"), ("yellow", "orange", "red")),
    _met("道路结冰", ("road icing", "icy road"), ("yellow", "orange", "red")),
    Signal("地质灾害", ("geological hazard", "landslide", "debris flow"), ALL_LEVELS, "geological"),
    Signal("山洪", ("flash flood", "mountain torrent"), ALL_LEVELS, "flood"),
    Signal("洪水", ("flood",), ALL_LEVELS, "flood"),
    Signal("渍涝", ("waterlogging",), ALL_LEVELS, "flood"),
)
SIGNALS_BY_NAME: dict[str, Signal] = {signal.name: signal for signal in SIGNALS}


def signal_of(event: str, headline: str = "") -> Signal | None:
    """The signal named in the event, else in the headline; None for anything else.

    Chinese names are found anywhere in the text ("暴雨预警信号", "青溪县气象台发布暴雨红色
    预警信号"); English names as whole words, case-insensitively ("Flash Flood Warning").
    Where several match, the one named first wins ("暴雨引发山洪" is a rainstorm warning).
    """
    for text in (event, headline):
        found = _first_signal(text)
        if found is not None:
            return found
    return None


def _first_signal(text: str) -> Signal | None:
    if not text:
        return None
    lowered = f" {text.casefold()} "
    best: tuple[int, Signal] | None = None
    for signal in SIGNALS:
        positions = [text.find(signal.name)]
        for english in signal.english:
            index = lowered.find(english)
            # whole words only: "flood" must not match inside "floodgate"
            if index > 0 and not lowered[index - 1].isalnum():
                end = index + len(english)
                if not lowered[end].isalnum():
                    positions.append(index - 1)
        found = [position for position in positions if position >= 0]
        if found and (best is None or min(found) < best[0]):
            best = (min(found), signal)
    return best[1] if best else None


def fit_level(level: str, signal: Signal | None) -> str:
    """The level moved into the signal's colours (unchanged for no signal or a fitting one)."""
    if signal is None or level in signal.levels:
        return level
    if level_rank(level) < level_rank(signal.levels[0]):
        return signal.levels[0]
    return signal.levels[-1]
