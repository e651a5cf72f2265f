"""Commands built from settings classes: one description per knob, and flags that only override what was given."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.main import get_command
from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.errors import ConfigError
from sobesednik.flags import Flag, Positional, flag_name, is_secret
from sobesednik.settings_cli import Given, commands_settings, settings_command

CLI_SOURCE = Path(__file__).resolve().parents[1] / "src" / "sobesednik" / "cli.py"


class _KnobSettings(BaseSettings):
    """Every kind of field a command may take: what the other stages' settings use or will use."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_KNOB_")

    inputs: Annotated[list[Path], Positional("INPUT")] = Field([], description="files to read")
    out: Path = Field(Path("out"), description="where to write")
    adapter: list[str] = Field([], description="NAME=RUN_DIR; repeat")
    arch: Literal["gpt2", "llama"] = Field("gpt2", description="architecture")
    steps: int = Field(3, ge=0, description="how many steps")
    rate: float | None = Field(None, description="a rate, if any")
    verbose: bool = Field(False, description="talk more")
    keep: Annotated[bool, Flag(off="--drop")] = Field(True, description="keep them")
    key: SecretStr | None = Field(None, description="a secret: environment only")


def _knob_app() -> tuple[typer.Typer, list[_KnobSettings]]:
    knob_app, seen = typer.Typer(rich_markup_mode=None), []

    @settings_command(knob_app, "knob", _KnobSettings)
    def knob(given: Given[_KnobSettings], extra: Annotated[int, typer.Option(help="own option")] = 7) -> None:
        seen.append(given.settings(under={"steps": extra}))

    @knob_app.command("other")
    def other() -> None:  # a second command keeps typer from flattening the app
        """Not built from settings."""

    return knob_app, seen


def test_every_kind_of_field_becomes_its_flag(monkeypatch: pytest.MonkeyPatch):
    knob_app, seen = _knob_app()
    monkeypatch.setenv("SOBESEDNIK_KNOB_RATE", "0.5")
    monkeypatch.setenv("SOBESEDNIK_KNOB_OUT", "from-env")
    result = CliRunner().invoke(knob_app, ["knob", "a.json", "b.json", "--adapter", "x=runs/x", "--adapter",
                                           "y=runs/y", "--arch", "llama", "--verbose", "--drop"])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.inputs == [Path("a.json"), Path("b.json")]
    assert settings.adapter == ["x=runs/x", "y=runs/y"]
    assert (settings.arch, settings.verbose, settings.keep) == ("llama", True, False)
    # flags not given leave the environment's values; the command's own option fills in under the flags
    assert (settings.out, settings.rate, settings.steps) == (Path("from-env"), 0.5, 7)


def test_given_flags_win_over_the_environment_and_bad_values_are_one_error(monkeypatch: pytest.MonkeyPatch):
    knob_app, seen = _knob_app()
    monkeypatch.setenv("SOBESEDNIK_KNOB_STEPS", "9")
    assert CliRunner().invoke(knob_app, ["knob", "a.json", "--steps", "1", "--extra", "5"]).exit_code == 0
    assert seen[0].steps == 1
    result = CliRunner().invoke(knob_app, ["knob", "a.json", "--arch", "bert"])
    assert isinstance(result.exception, ConfigError)  # `sobesednik`'s group prints it as one line (test_cli.py)
    assert str(result.exception) == "invalid _KnobSettings: arch: Input should be 'gpt2' or 'llama' (given: 'bert')"


def test_help_shows_descriptions_defaults_and_choices_but_no_secret():
    knob_app, _ = _knob_app()
    result = CliRunner().invoke(knob_app, ["knob", "--help"])
    assert result.exit_code == 0
    output = " ".join(result.output.split())
    assert "--arch [gpt2|llama] architecture [default: gpt2]" in output
    assert "--keep / --drop keep them [default: keep]" in output
    assert "--verbose / --no-verbose talk more [default: no-verbose]" in output
    assert "--steps <int> how many steps [default: 3]" in output
    assert "INPUT" in output
    assert "--key" not in output


def test_a_field_without_a_description_is_refused():
    class Undescribed(BaseSettings):
        steps: int = 3

    with pytest.raises(TypeError, match=r"Undescribed.steps has no description"):
        settings_command(typer.Typer(), "x", Undescribed)(lambda given: None)


def test_every_flag_of_every_command_is_its_fields_description():
    commands = get_command(app).commands  # type: ignore[attr-defined]
    built = commands_settings(app)
    assert {name for name, _ in built} == set(commands), "every command takes its options from a settings class"
    for name, settings_class in built:
        params = {param.name: param for param in commands[name].params}
        for field_name, info in settings_class.model_fields.items():
            assert info.description, f"{settings_class.__name__}.{field_name} has no description"
            if is_secret(info):
                assert field_name not in params, f"secret {field_name} must not be a flag of `{name}`"
                continue
            param = params[field_name]
            assert param.help == info.description, f"`{name}` {field_name}: help differs from the description"
            if param.param_type_name == "option":
                assert param.opts[0] == flag_name(field_name)


def test_existing_flag_names_are_kept():
    commands = get_command(app).commands  # type: ignore[attr-defined]
    declared = {name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
                for name, command in commands.items()}
    assert {"--keep-forwarded", "--skip-forwarded", "--keep-via-bot", "--skip-via-bot", "--show-names",
            "--hide-names", "--mask-pii", "--no-mask-pii", "--progress", "--no-progress"} <= declared["prepare"]
    assert {"--config", "--lora-target-modules", "--packing", "--no-packing", "--load-in-4bit",
            "--fidelity-samples"} <= declared["train"]
    assert {"--allowed-ids", "--webhook-url", "--service-url"} <= declared["bot"]
    assert {"--bot", "--no-bot", "--record", "--export"} <= declared["demo"]


def test_cli_collects_no_locals():
    calls = [node.func.id for node in ast.walk(ast.parse(CLI_SOURCE.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert "locals" not in calls


def test_bot_ids_come_comma_separated_or_repeated(monkeypatch: pytest.MonkeyPatch):
    from sobesednik.bot.settings import BotSettings

    monkeypatch.setenv("SOBESEDNIK_BOT_TOKEN", "123456:" + "a" * 35)
    assert BotSettings(allowed_ids=["1,2", "3"]).allowed_ids == [1, 2, 3]
    monkeypatch.setenv("SOBESEDNIK_BOT_ALLOWED_IDS", "4, 5")
    assert BotSettings().allowed_ids == [4, 5]
    assert json.loads(BotSettings(allowed_ids=[6]).model_dump_json())["allowed_ids"] == [6]
