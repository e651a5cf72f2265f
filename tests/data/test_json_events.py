"""Bounded parse events: the same events as ijson.parse, refusal past MAX_DEPTH, and `prepare` on a nesting bomb
ending in one line and bounded memory instead of the OOM killer."""

from __future__ import annotations

import io
import resource
import subprocess
import sys
from pathlib import Path

import ijson
import pytest

from sobesednik.data.json_events import MAX_DEPTH, TooDeepError, parse


@pytest.mark.parametrize("document", [
    b'{"a.b": [1, {"c": [[], {}]}], "d": {"e": null}, "f": [[[true]]], "g": "\\u0430"}',
    b'[{"messages": [{"id": 1}]}, 2.5, "x"]',
    b'"just a string"',
])
def test_events_equal_ijson_parse(document: bytes) -> None:
    assert list(parse(io.BytesIO(document), use_float=True)) == list(ijson.parse(io.BytesIO(document), use_float=True))


def test_events_of_the_sample_export_equal_ijson_parse(sample_export: Path) -> None:
    data = sample_export.read_bytes()
    assert list(parse(io.BytesIO(data), use_float=True)) == list(ijson.parse(io.BytesIO(data), use_float=True))


def test_nesting_is_refused_just_past_the_bound() -> None:
    assert list(parse(io.BytesIO(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)))[-1] == ("", "end_array", None)
    with pytest.raises(TooDeepError, match=f"deeper than {MAX_DEPTH} levels"):
        list(parse(io.BytesIO(b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1))))


def _limit_memory() -> None:
    limit = 2 << 30  # address space; unbounded ijson prefixes needed over 20 GB for these files
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("body", [
    b'{"a":' * 300_000 + b"1" + b"}" * 300_000,  # nested objects at the top level
    b'{"name": "x", "type": "personal_chat", "id": 1, "messages": [' + b"[" * 10**6 + b"]" * 10**6 + b"]}",
])
def test_prepare_refuses_a_nesting_bomb_in_one_line(tmp_path: Path, body: bytes) -> None:
    export = tmp_path / "result.json"
    export.write_bytes(body)
    result = subprocess.run([sys.executable, "-m", "sobesednik", "prepare", str(export), "--out", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"nests arrays or objects deeper than {MAX_DEPTH} levels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
