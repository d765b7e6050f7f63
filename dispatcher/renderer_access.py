"""One shared message renderer for code that has a session but no runtime at hand."""

from __future__ import annotations

from functools import cache

from dispatcher.messages import Renderer


@cache
def renderer() -> Renderer:
    return Renderer()
