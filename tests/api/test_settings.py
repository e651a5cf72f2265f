"""ApiSettings: dtype names as training spells them, int8 only on float32, a blank API key means none."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sobesednik.api.settings import ApiSettings


@pytest.mark.parametrize(("given", "dtype"), [("bf16", "bfloat16"), ("fp16", "float16"), ("fp32", "float32"),
                                              ("bfloat16", "bfloat16"), ("auto", "auto")])
def test_dtype_takes_the_short_names_too(given: str, dtype: str) -> None:
    assert ApiSettings(dtype=given).dtype == dtype


def test_unknown_dtype_names_the_choices() -> None:
    with pytest.raises(ValidationError, match="'auto', 'float32', 'bfloat16' or 'float16'"):
        ApiSettings(dtype="int4")


def test_int8_with_a_16_bit_dtype_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="drop --dtype or --quantize"):
        ApiSettings(dtype="bf16", quantize="int8")


def test_blank_api_key_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOBESEDNIK_API_KEY", " ")
    assert ApiSettings().key is None
