"""Static checks of the Docker images and the compose file: what can be proven without a Docker engine.

The compose file is validated against the official compose-spec schema (vendored by check-jsonschema), the
Dockerfiles are parsed with buildkit's own parser, and every name that wires the containers together (service
names, environment variables, health endpoints, entrypoint commands) is checked against the code it refers to.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest
import yaml

from sobesednik.api.settings import ApiSettings
from sobesednik.bot.settings import BotSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILES = {"api": REPO_ROOT / "docker" / "api.Dockerfile", "bot": REPO_ROOT / "docker" / "bot.Dockerfile"}
SETTINGS_CLASSES = (ApiSettings, BotSettings)
# `${NAME}` or `${NAME:-default}` / `${NAME:?message}` interpolations in the compose file.
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)")


def settings_env_names() -> set[str]:
    return {
        f"{cls.model_config['env_prefix']}{name}".upper() for cls in SETTINGS_CLASSES for name in cls.model_fields
    }


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def instructions(path: Path) -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(path)))


def final_stage(commands: list[dockerfile.Command]) -> list[dockerfile.Command]:
    last_from = max(index for index, command in enumerate(commands) if command.cmd == "FROM")
    return commands[last_from:]


def test_compose_file_follows_the_compose_spec():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_and_bot_share_a_bridge_network(compose):
    services = compose["services"]
    assert {"api", "bot"} <= set(services)
    networks = set(services["api"]["networks"]) & set(services["bot"]["networks"])
    assert networks, "api and bot must share a network"
    assert all(compose["networks"][name]["driver"] == "bridge" for name in networks)


def test_bot_waits_for_a_healthy_api_and_reaches_it_by_name(compose):
    bot = compose["services"]["bot"]
    assert bot["depends_on"]["api"]["condition"] == "service_healthy"
    assert "http://api:8000" in bot["environment"]["SOBESEDNIK_BOT_SERVICE_URL"]


def test_api_port_is_published_on_loopback_only_by_default(compose):
    (published,) = compose["services"]["api"]["ports"]
    assert published.startswith("${SOBESEDNIK_API_PUBLISH:-127.0.0.1:8000}")


def test_every_sobesednik_variable_in_compose_is_a_setting(compose):
    known = settings_env_names()
    named = set()
    for service in compose["services"].values():
        named |= {name for name in service.get("environment", {}) if name.startswith("SOBESEDNIK_")}
    assert named, "compose passes no settings at all"
    assert named <= known, f"not settings of ApiSettings/BotSettings: {sorted(named - known)}"


def test_required_bot_token_must_be_given_to_compose(compose):
    token = compose["services"]["bot"]["environment"]["SOBESEDNIK_BOT_TOKEN"]
    assert token.startswith("${SOBESEDNIK_BOT_TOKEN:?"), "a missing token must stop `docker compose up` with a message"


def test_env_example_lists_every_variable_compose_reads():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    interpolated = set(INTERPOLATION.findall(text))
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert interpolated <= listed, f"missing from .env.example: {sorted(interpolated - listed)}"


def test_env_example_names_only_real_settings():
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*(SOBESEDNIK_(?:API|BOT)_[A-Z0-9_]+)=", example, flags=re.MULTILINE))
    # SOBESEDNIK_API_PUBLISH is compose's own (the host port mapping), not a service setting.
    unknown = listed - settings_env_names() - {"SOBESEDNIK_API_PUBLISH"}
    assert not unknown, f".env.example names variables no settings class reads: {sorted(unknown)}"


def test_api_healthcheck_probes_an_endpoint_the_app_serves(compose):
    from sobesednik.api.app import create_app

    paths = set(create_app(ApiSettings(model="unused")).openapi()["paths"])
    compose_probe = " ".join(compose["services"]["api"]["healthcheck"]["test"])
    healthcheck = next(c for c in instructions(DOCKERFILES["api"]) if c.cmd == "HEALTHCHECK")
    for probe in (compose_probe, " ".join(healthcheck.value)):
        (path,) = re.findall(r"http://127\.0\.0\.1:8000(/\w+)", probe)
        assert path == "/readyz" and path in paths


@pytest.mark.parametrize("image, command", [("api", "serve"), ("bot", "bot")])
def test_entrypoint_is_the_cli_command(image: str, command: str):
    from typer.main import get_command

    from sobesednik.cli import app

    (entrypoint,) = [c for c in instructions(DOCKERFILES[image]) if c.cmd == "ENTRYPOINT"]
    assert entrypoint.value == ("sobesednik", command)
    assert command in get_command(app).commands  # type: ignore[attr-defined]


@pytest.mark.parametrize("image", ["api", "bot"])
def test_image_runs_as_a_non_root_user(image: str):
    users = [c.value[0] for c in final_stage(instructions(DOCKERFILES[image])) if c.cmd == "USER"]
    assert users and users[-1] not in {"root", "0"}


@pytest.mark.parametrize("image", ["api", "bot"])
def test_dependencies_install_before_the_source_is_copied(image: str):
    commands = instructions(DOCKERFILES[image])
    copy_src = next(i for i, c in enumerate(commands) if c.cmd == "COPY" and c.value[0] == "src")
    installs = [i for i, c in enumerate(commands) if c.cmd == "RUN" and "pip install" in c.value[0]]
    assert installs[0] < copy_src, "the dependency layer must come before COPY src"


def test_api_image_can_build_the_int8_kernel_where_it_runs():
    runs = " ".join(c.value[0] for c in final_stage(instructions(DOCKERFILES["api"])) if c.cmd == "RUN")
    assert "gcc" in runs, "without a C compiler the service decodes on torch's slower int8 kernel"


def test_bot_image_installs_no_torch():
    commands = instructions(DOCKERFILES["bot"])
    runs = " ".join(c.value[0] for c in commands if c.cmd == "RUN")
    assert "torch" not in runs
    assert '".[bot]"' in runs
    requirements = _extra_requirements("bot")
    heavy = {name for name in requirements if name in {"torch", "transformers", "peft", "accelerate"}}
    assert not heavy, f"the bot extra pulls {heavy}"


def _extra_requirements(extra: str) -> set[str]:
    """Names of the core requirements plus those of one extra, as pyproject declares them."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"][extra]]
    return {re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower() for spec in specs}


def test_dockerignore_keeps_artefacts_out_of_the_build_context():
    ignored = set((REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", "data", "models", "runs", ".env", ".git"} <= ignored
