"""Renders what people read and hear from the templates in `templates/messages/`."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from dispatcher.paths import bundled_dir


class Renderer:
    def __init__(self) -> None:
        self._env = Environment(
            loader=FileSystemLoader(str(bundled_dir("templates") / "messages")),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def render(self, name: str, **context: Any) -> str:
        """Render `templates/messages/<name>.j2`, collapsing it to clean text."""
        text = self._env.get_template(f"{name}.j2").render(**context)
        return "\n".join(line.rstrip() for line in text.strip().splitlines())
