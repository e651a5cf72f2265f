"""The generated configuration reference stays in sync with the settings classes."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sobesednik import settings_docs

REPO_ROOT = Path(__file__).resolve().parents[1]


class _ExampleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_EXAMPLE_")

    max_tokens: int = Field(40, description="tokens per request")
    token: SecretStr | None = Field(None, description="from @BotFather")
    names: list[str] = Field(["a", "b"], description="comma-separated")


def test_describe_reads_env_names_flags_defaults_and_descriptions():
    described = {s.env: s for s in settings_docs.describe(_ExampleSettings)}
    assert described["SOBESEDNIK_EXAMPLE_MAX_TOKENS"].comment == "tokens per request"
    assert described["SOBESEDNIK_EXAMPLE_MAX_TOKENS"].flag == ""  # no command given: env-only
    assert described["SOBESEDNIK_EXAMPLE_MAX_TOKENS"].default == "40"
    assert described["SOBESEDNIK_EXAMPLE_TOKEN"].secret
    assert described["SOBESEDNIK_EXAMPLE_TOKEN"].comment == "from @BotFather"
    assert described["SOBESEDNIK_EXAMPLE_NAMES"].default == "a,b"


def test_readme_table_and_env_example_are_up_to_date():
    assert settings_docs.main(["--check", "--root", str(REPO_ROOT)]) == 0, (
        "run `python -m sobesednik.settings_docs` to regenerate README's table and .env.example"
    )


def test_check_reports_a_stale_readme(tmp_path: Path, capsys):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(
        settings_docs.replace_table(readme, f"{settings_docs.TABLE_START}\nold\n{settings_docs.TABLE_END}"),
        encoding="utf-8",
    )
    assert settings_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "README.md is out of date" in capsys.readouterr().err
    assert settings_docs.main(["--root", str(tmp_path)]) == 0
    assert settings_docs.main(["--check", "--root", str(tmp_path)]) == 0


def test_flags_come_from_the_cli_and_secrets_have_none():
    flags = settings_docs.command_flags("bot")
    assert flags["service_url"] == "--service-url"
    assert "token" not in flags, "secrets must not be CLI flags: they would show in the process list"
    assert settings_docs.command_flags("export")["run_dir"] == "argument"
