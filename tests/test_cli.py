"""The command line shell: help, version, and the one place where user errors become exit codes."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from sobesednik import __version__
from sobesednik.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_runs_as_a_module_without_heavy_imports():
    code = "import sys; from sobesednik.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = subprocess.run([sys.executable, "-m", "sobesednik", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "sobesednik" in result.stdout


def test_a_failing_serve_never_prints_the_api_key(monkeypatch, tiny_model_dir) -> None:
    """A cross-field error and a bad field value, with every secret set: the output names the problem only."""
    secret = "sk-very-secret-0123456789"
    monkeypatch.setenv("SOBESEDNIK_API_KEY", secret)
    for args in (["serve", "--model", str(tiny_model_dir), "--quantize", "int8", "--dtype", "bfloat16"],
                 ["serve", "--model", str(tiny_model_dir), "--port", "99999"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert "invalid ApiSettings" in result.output
        assert secret not in result.output
