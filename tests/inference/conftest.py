"""A loaded Generator on the tiny random model, shared by the inference and API tests of one module."""

from __future__ import annotations

from pathlib import Path

import pytest

from sobesednik.inference.generator import Generator


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> Generator:
    return Generator.load(tiny_model_dir)
