"""What a settings field carries for the command line, beside its `description`; no typer here.

A field of a command's settings class is an option named after it unless it is a secret (`SecretStr`: a flag
would show it in the process list) or marked in its `Annotated` type:

    exports: Annotated[list[Path], Positional("EXPORT")] = Field([], description="…")   # a positional argument
    keep_forwarded: Annotated[bool, Flag(off="--skip-forwarded")] = Field(False, description="…")

`sobesednik.settings_cli` builds the commands from these; `sobesednik.settings_docs` the reference tables.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Positional:
    """Marks a field as the command's positional argument (required on the command line)."""

    metavar: str | None = None


@dataclass(frozen=True)
class Flag:
    """Another name for the off side of a `bool` field's flag pair than `--no-<name>`."""

    off: str


def is_secret(info: FieldInfo) -> bool:
    return _contains(info.annotation, SecretStr)


def flag_name(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def marker(info: FieldInfo, kind: type[Any]) -> Any:
    """The field's `kind` marker (`Positional`, `Flag`) from its `Annotated` type, or None."""
    return next((item for item in info.metadata if isinstance(item, kind)), None)


def _contains(annotation: Any, kind: type) -> bool:
    return annotation is kind or any(_contains(arg, kind) for arg in typing.get_args(annotation))
