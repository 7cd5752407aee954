"""Settings models and their errors: the strict pydantic base every config section uses, and the one
formatter that turns a `ValidationError` into lines naming the field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """Unknown fields are errors, values are frozen (hashable, safe to share with workers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """`PREFIX: a.b.c: message` per error; an unknown key reads `unknown field`."""
    lines = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        lines.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}")
    return lines
