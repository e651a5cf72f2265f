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
