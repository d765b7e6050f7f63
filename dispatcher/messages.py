"""Renders what people read and hear from the templates in `templates/messages/`."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from dispatcher.paths import bundled_dir


def call_template(channel: str, previous_call_id: int | None) -> str:
    """The template asking for an answer on a channel: the update's text for a call that
    carries on a call of the warning an Update superseded."""
    return f"update_{channel}" if previous_call_id is not None else f"call_{channel}"


class Renderer:
    def __init__(self) -> None:
        self._env = Environment(
            loader=FileSystemLoader(str(bundled_dir("templates") / "messages")),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # The templates ship with the code: no stat() of the file on every message
            # (300,000 renders for a big warning).
            auto_reload=False,
        )

    def render(self, name: str, **context: Any) -> str:
        """Render `templates/messages/<name>.j2`, collapsing it to clean text."""
        text = self._env.get_template(f"{name}.j2").render(**context)
        return "\n".join(line.rstrip() for line in text.strip().splitlines())
