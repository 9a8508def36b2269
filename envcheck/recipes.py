"""The one way into recipes/: reviewed compatibility data shipped inside the wheel.

The top-level ``recipes/`` folder is installed as the package ``envcheck._recipes``
(see pyproject.toml), so the same files are read from a checkout, an editable
install and a wheel. Every fact in those files carries a ``source``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


class RecipeError(RuntimeError):
    """A recipes file is missing or malformed: a packaging bug, not a user error."""


def _root():
    return resources.files("envcheck._recipes")


@functools.cache
def load(name: str) -> Any:
    """Parsed contents of ``recipes/<name>.json`` (cached; treat as read-only)."""
    try:
        text = (_root() / f"{name}.json").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError) as exc:
        raise RecipeError(f"recipes/{name}.json is missing from this install: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecipeError(f"recipes/{name}.json is not valid JSON: {exc}") from None


def text(name: str) -> str:
    """Raw text of a non-JSON recipe (scripts, manifests), e.g. ``text("slurm/prolog.sh")``."""
    node = _root()
    for part in name.split("/"):
        node = node / part
    return node.read_text(encoding="utf-8")


def names() -> list[str]:
    """Names of every JSON recipe shipped."""
    return sorted(p.name[:-5] for p in _root().iterdir() if p.name.endswith(".json"))
