"""Typer commands built from settings classes: a settings field is the one description of a knob.

Every field of a command's settings class becomes an option named after it (`gap_minutes` → `--gap-minutes`,
help = the field's `description`, default shown from the class), a `bool` a `--x/--no-x` pair, a `list` a
repeatable option, a `Literal` or `Enum` a string whose choices the help lists (the settings class validates it,
so one error line covers flags, environment and files alike). Secrets and positional arguments: `sobesednik.flags`.
Only the flags a user gave reach the settings class, so `SOBESEDNIK_…` variables and `.env` still fill the rest.

    @settings_command(app, "prepare", PrepareSettings)
    def prepare_command(given: Given[PrepareSettings]) -> None:
        prepare(given.settings())
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from sobesednik.errors import ConfigError
from sobesednik.flags import Flag, Positional, flag_name, is_secret, marker

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


@dataclass(frozen=True)
class Given(Generic[SettingsT]):
    """The values of the flags a user gave, not yet validated; `settings()` validates them."""

    settings_class: type[SettingsT]
    values: dict[str, Any] = field(default_factory=dict)

    def settings(self, under: Mapping[str, Any] | None = None) -> SettingsT:
        """The settings from the given flags over `under` (e.g. a config file) over the environment."""
        return build_settings(self.settings_class, **{**(under or {}), **self.values})


def build_settings(settings_class: type[SettingsT], **values: Any) -> SettingsT:
    """`settings_class(**values)` over the environment; a validation error becomes one `ConfigError` line."""
    try:
        return settings_class(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
            f"{_given(settings_class, problem)}"
            for problem in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid {settings_class.__name__}: {problems}") from None


def _given(settings_class: type[BaseSettings], problem: Any) -> str:
    """The bad value of a field, for the error line; never a secret's, and not the whole input of a cross-field
    check (its message names the fields, and the input holds every value, the API key and tokens too)."""
    if not problem["loc"]:
        return ""
    info = settings_class.model_fields.get(str(problem["loc"][0]))
    if info is not None and is_secret(info):
        return " (given: a secret, not shown)"
    return f" (given: {problem.get('input')!r})"


def settings_command(
    app: typer.Typer, name: str, settings_class: type[SettingsT]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `handler(given, **own_options)` as command `name` with an option per field of `settings_class`.

    The handler's parameters after the first are options of the command itself (e.g. `train --config`), declared
    the usual typer way; the first receives the `Given` flags."""

    def register(handler: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(handler, eval_str=True).parameters.values())[1:]
        own_names = [parameter.name for parameter in own]

        def command(_context: typer.Context, **values: Any) -> None:
            extras = {name: values.pop(name) for name in own_names}
            # by name: typer 0.2x brings its own copy of click, whose ParameterSource is not click's
            given = {name: value for name, value in values.items()
                     if getattr(_context.get_parameter_source(name), "name", None) == "COMMANDLINE"}
            handler(Given(settings_class, given), **extras)

        context = inspect.Parameter("_context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [context, *parameters(settings_class), *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)])
        command.__doc__ = handler.__doc__
        command.__name__ = handler.__name__
        command.settings_class = settings_class  # type: ignore[attr-defined]  # for the generated docs
        app.command(name)(command)
        return handler

    return register


def commands_settings(app: typer.Typer) -> list[tuple[str, type[BaseSettings]]]:
    """(command name, settings class) of every command built by `settings_command`, in registration order."""
    return [(info.name, info.callback.settings_class) for info in app.registered_commands  # type: ignore[union-attr]
            if info.name and hasattr(info.callback, "settings_class")]


def parameters(settings_class: type[BaseSettings]) -> list[inspect.Parameter]:
    """One typer parameter per field of `settings_class` that the command line may set."""
    params = []
    for name, info in settings_class.model_fields.items():
        if is_secret(info):
            continue
        if not info.description:
            raise TypeError(f"{settings_class.__name__}.{name} has no description: give it Field(description=…)")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, **_typer_parameter(name, info)))
    return params


def _typer_parameter(name: str, info: FieldInfo) -> dict[str, Any]:
    """The annotation and default (a typer `Argument`/`Option`) of the field's parameter.

    The option's default is the class's, for `--help`; `settings_command` passes on only the values that came
    from the command line, so the environment still fills the rest."""
    kind, choices = _cli_type(info.annotation)
    positional = marker(info, Positional)
    if positional is not None:
        argument = typer.Argument(..., help=info.description, show_default=False,
                                  **({"metavar": positional.metavar} if positional.metavar else {}))
        return {"annotation": kind, "default": argument}
    default = None if info.default is PydanticUndefined else getattr(info.default, "value", info.default)
    if kind is bool:
        off = marker(info, Flag)
        declaration = f"{flag_name(name)}/{off.off if off else '--no-' + flag_name(name)[2:]}"
        option = typer.Option(default, declaration, help=info.description)
    else:
        metavar = f"[{'|'.join(choices)}]" if choices else None
        if typing.get_origin(kind) is list:  # a repeatable flag takes one item each time: name the item's type
            metavar = f"<{typing.get_args(kind)[0].__name__.lower()}>"
        option = typer.Option(default, flag_name(name), help=info.description, metavar=metavar)
    return {"annotation": typing.Optional[kind], "default": option}  # noqa: UP045  # typer reads Optional


def _cli_type(annotation: Any) -> tuple[Any, list[str]]:
    """The type typer parses a field's flag as, and its choices (for Literal and Enum fields)."""
    annotation = _without_none(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        # items are given to pydantic as text: it converts them, and a field's own validator may split them
        return list[Path] if item is Path else list[str], []
    if origin is Literal:
        return str, [str(choice) for choice in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return str, [str(member.value) for member in annotation]
    if annotation in (bool, int, float, str, Path):
        return annotation, []
    return str, []


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation
