"""End-to-end tests of `sobesednik prepare` on the shipped sample export, through the CLI and the stage function."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from itertools import compress, pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sobesednik.cli import app
from sobesednik.data.split import SPLITS
from sobesednik.errors import ConfigError

from .exports import all_samples, msg, read_jsonl, run_prepare

runner = CliRunner()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prepared_data_dir_follows_the_contract(prepared_data_dir: Path) -> None:
    samples = {split: _read(prepared_data_dir / f"{split}.jsonl") for split in SPLITS}
    assert all(samples.values()), {split: len(rows) for split, rows in samples.items()}
    for rows in samples.values():
        for row in rows:
            messages = row["messages"]
            assert messages[-1]["role"] == "assistant"
            assert len(messages) >= 2
            assert all(a["role"] != b["role"] for a, b in pairwise(messages))
            assert all(message["content"].strip() for message in messages)
            assert set(row["meta"]) >= {"chat_id", "thread", "message_ids"}
    stats = json.loads((prepared_data_dir / "stats.json").read_text(encoding="utf-8"))
    assert stats["samples"] == sum(len(rows) for rows in samples.values())
    assert (prepared_data_dir / "stats.md").read_text(encoding="utf-8").startswith("# Dataset statistics")
    assert (prepared_data_dir / "stats.png").read_bytes().startswith(b"\x89PNG")


def test_cli_prepare_writes_dataset_and_reports(sample_export: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", str(sample_export), "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "samples (train" in result.output
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["inputs"][0]["sha256"]) == 64
    assert manifest["options"]["gap_minutes"] == 60


def test_cli_prepare_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", str(tmp_path / "nope.json"), "--out", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "nope.json: no such file" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("DIR", "is a directory"),
    (b"", "is empty"),
    (b"<!DOCTYPE html><html><head><title>Exported Data</title></head></html>", "is not JSON (an HTML export?)"),
    ('{"name": "c", "messages": [{"id": 1, "type": "message", "text": "обры'.encode(), "is truncated"),
    (b'{"name": "c", "id": 1}', "holds no messages"),
    (b"[1, 2, 3]", "holds no messages"),
    (b'{"name": "c", "messages": [{"id": 1, "type": "service", "text": ""}, {"id": 2, "type": "message", '
     b'"from_id": "user1", "photo": "p.jpg", "text": ""}]}', "no message with usable text"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes | str | None, message: str):
    path = tmp_path / "result.json"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["prepare", str(path), "--out", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_no_samples_and_bad_options_exit_2(make_export: Callable[..., Path], tmp_path: Path):
    path = make_export([msg(1, "user1", "одно сообщение")])
    result = runner.invoke(app, ["prepare", str(path), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "no samples left" in result.output
    result = runner.invoke(app, ["prepare", str(path), "--out", str(tmp_path / "b"), "--valid", "0.6", "--test", "0.5"])
    assert result.exit_code == 2 and "must leave samples for training" in result.output
    result = runner.invoke(app, ["prepare", str(path), "--out", str(path)])
    assert result.exit_code == 2 and "is a file" in result.output


def _chat(count: int, authors: str = "ab") -> list[dict]:
    return [msg(i, f"user{authors[i % len(authors)]}", f"сообщение номер {i}") for i in range(1, count + 1)]


def test_speaker_restricts_targets_by_id_or_name(make_export: Callable[..., Path], tmp_path: Path):
    path = make_export(_chat(30, "abc"))
    stats = run_prepare(path, tmp_path / "id", speaker=["usera"])
    assert stats["authors"]["with_samples"] == 1 and stats["dropped"]["not_speaker"] > 0
    # Message i is by "abc"[i % 3]: every reply left must be one of usera's (i divisible by 3).
    assert all(int(row["messages"][-1]["content"].split()[-1]) % 3 == 0 for row in all_samples(tmp_path / "id"))
    by_name = run_prepare(path, tmp_path / "name", speaker=["имя USERA"])
    assert by_name["samples"] == stats["samples"]
    with pytest.raises(ConfigError, match="--speaker 'Никто' matches no author"):
        run_prepare(path, tmp_path / "none", speaker=["Никто"])


def test_speakers_file_holds_every_authors_train_replies_and_no_heldout_text(make_export: Callable[..., Path],
                                                                              tmp_path: Path):
    # Eight conversations (two hours of silence between them) of three authors, usera the only target.
    messages = [msg(i, f"user{'abc'[i % 3]}", f"сообщение номер {i}", minute=i + 120 * (i // 9)) for i in range(72)]
    run_prepare(make_export(messages), tmp_path / "data", speaker=["usera"], valid=0.25, test=0.25)
    speakers = _read(tmp_path / "data" / "speakers.jsonl")
    assert {row["speaker"] for row in speakers} == {"usera", "userb", "userc"}
    train_replies = {row["messages"][-1]["content"] for row in _read(tmp_path / "data" / "train.jsonl")}
    assert train_replies <= {row["text"] for row in speakers if row["speaker"] == "usera"}
    held_out = {message["content"] for split in ("valid", "test")
                for row in _read(tmp_path / "data" / f"{split}.jsonl") for message in row["messages"]}
    assert held_out and not held_out & {row["text"] for row in speakers}
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["targets"] == ["usera"]


def test_mask_pii_reaches_the_dataset(make_export: Callable[..., Path], tmp_path: Path):
    path = make_export([msg(1, "user1", "дай телефон"), msg(2, "user2", "звони +7 912 345-67-89 или пиши a@b.ru")])
    run_prepare(path, tmp_path / "masked", mask_pii=True)
    [sample] = all_samples(tmp_path / "masked")
    assert sample["messages"][-1]["content"] == "звони <PHONE> или пиши <EMAIL>"


def test_chat_picks_chats_of_a_full_account_export(tmp_path: Path):
    chats = [{"name": name, "id": chat_id, "type": "personal_chat", "messages": _chat(6)}
             for name, chat_id in (("Мама", 1), ("Дача", 2))]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"about": "", "chats": {"list": chats}}, ensure_ascii=False), encoding="utf-8")
    both = run_prepare(path, tmp_path / "both")
    one = run_prepare(path, tmp_path / "one", chat=["2"])
    assert both["chats"] == 2 and one["chats"] == 1 and one["skipped"]["chat_not_selected"] == 6
    assert {row["meta"]["chat_id"] for row in all_samples(tmp_path / "one")} == {2}
    with pytest.raises(ConfigError, match="matches no chat"):
        run_prepare(path, tmp_path / "none", chat=["Работа"])


def test_split_by_time_puts_the_newest_conversation_into_test(make_export: Callable[..., Path], tmp_path: Path):
    # Ten conversations a day apart, four samples each.
    messages = [msg(day * 10 + i, f"user{'ab'[i % 2]}", f"день {day} реплика {i}", minute=day * 1440 + i)
                for day in range(10) for i in range(1, 6)]
    run_prepare(make_export(messages), tmp_path / "t", split_by="time", valid=0.1, test=0.1)
    test_days = {row["messages"][-1]["content"].split()[1] for row in read_jsonl(tmp_path / "t" / "test.jsonl")}
    valid_days = {row["messages"][-1]["content"].split()[1] for row in read_jsonl(tmp_path / "t" / "valid.jsonl")}
    assert (test_days, valid_days) == ({"9"}, {"8"})


def test_show_names_and_stats_markdown(sample_export: Path, tmp_path: Path):
    stats = run_prepare(sample_export, tmp_path / "names", show_names=True)
    assert "Аня Белова" in json.dumps(stats, ensure_ascii=False)
    markdown = (tmp_path / "names" / "stats.md").read_text(encoding="utf-8")
    assert "| `forwarded` |" in markdown and "Аня Белова" in markdown
    hidden = (tmp_path / "hidden" / "stats.md")
    run_prepare(sample_export, tmp_path / "hidden")
    assert "Аня Белова" not in hidden.read_text(encoding="utf-8")


def test_same_inputs_and_options_give_the_same_files(sample_export: Path, tmp_path: Path):
    run_prepare(sample_export, tmp_path / "one", seed=3)
    run_prepare(sample_export, tmp_path / "two", seed=3)
    for split in SPLITS:
        assert (tmp_path / "one" / f"{split}.jsonl").read_bytes() == (tmp_path / "two" / f"{split}.jsonl").read_bytes()


def test_splits_copied_in_the_kernel_are_the_line_by_line_ones(sample_export: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    """`copy_file_range` of runs of lines, and the plain copy where the OS has no such call, write the same files."""
    from sobesednik.data import prepare as prepare_module

    files = ["speakers.jsonl", *(f"{split}.jsonl" for split in SPLITS)]
    run_prepare(sample_export, tmp_path / "kernel", seed=3)
    monkeypatch.setattr(prepare_module, "_copy_runs", lambda *_: False)
    run_prepare(sample_export, tmp_path / "lines", seed=3)
    for name in files:
        copied = (tmp_path / "kernel" / name).read_bytes()
        assert copied and copied == (tmp_path / "lines" / name).read_bytes(), name


@pytest.mark.parametrize("selected", [[True, False, False, True, True, False, True], [False, True], [True], [False],
                                      []])
def test_copy_runs_copies_exactly_the_selected_lines(tmp_path: Path, selected: list[bool]):
    from array import array

    from sobesednik.data.prepare import _copy_runs

    lines = [f'{{"line": {index}, "text": "{"я" * index}"}}\n'.encode() for index in range(len(selected))]
    (tmp_path / "spool").write_bytes(b"".join(lines))
    with (tmp_path / "spool").open("rb") as source, (tmp_path / "out").open("wb") as out:
        if not _copy_runs(source, out, array("q", map(len, lines)), selected):
            pytest.skip("no copy_file_range for these files on this OS")
    assert (tmp_path / "out").read_bytes() == b"".join(compress(lines, selected))


def test_quirky_export_is_handled_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from sobesednik.data import prepare as prepare_module

    monkeypatch.setattr(prepare_module, "_PROGRESS_MIN_BYTES", 0)  # draw the progress bar too
    huge = "б" * 10_000_000  # a 10 MB paste
    messages = [msg(1, "user1", "вопрос\\x0bс табуляцией"), msg(2, 7, "ответ"), msg(3, None, huge),
                msg(4, "user1", "после простыни"), msg(5, "user2", "ответ на будущее", reply_to_message_id=99),
                msg(6, "user1", "ок, понял", unknown={"nested": [1, 2]}, forwarded_from=None)]
    body = json.dumps({"name": "c", "id": 1, "messages": messages}, ensure_ascii=False)
    path = tmp_path / "result.json"
    # Telegram Desktop's invalid `\xNN` escape and a byte-order mark, as real exports have them.
    path.write_bytes(b"\xef\xbb\xbf" + body.replace("\\\\x0b", "\\x0b").encode())
    stats = run_prepare(path, tmp_path / "out", progress=True)
    replies = {row["messages"][-1]["content"]: row for row in all_samples(tmp_path / "out")}
    assert replies["ответ"]["messages"][0]["content"] == "вопрос с табуляцией"  # \x0b is whitespace
    # The paste is no reply, and the two replies whose (merged) user turn holds it have no context left.
    assert "после простыни" not in replies and "ответ на будущее" not in replies
    assert stats["dropped"]["reply_too_long"] == 1 and stats["dropped"]["context_too_long"] == 2
    assert stats["quirks"]["integer_from_id"] == 1 and stats["quirks"]["reply_to_later_message"] == 1
    assert stats["skipped"]["forwarded"] == 1


def test_export_whose_messages_all_share_one_id_keeps_every_message(make_export: Callable[..., Path], tmp_path: Path):
    lines = ["ты дома?", "да, только пришёл", "чайник поставь", "уже кипит", "а хлеб купил?", "забыл, схожу"]
    messages = [msg(1, "user1" if index % 2 == 0 else "user2", f"{lines[index % 6]} ({index})", minute=index,
                    **({"reply_to_message_id": 1} if index % 3 == 2 else {}))
                for index in range(256)]
    stats = run_prepare(make_export(messages), tmp_path / "out", valid=0.0, test=0.0)
    assert stats["messages_kept"] == 256
    assert stats["quirks"]["duplicate_ids"] == 255
    assert "duplicate_ids" in (tmp_path / "out" / "stats.md").read_text(encoding="utf-8")
    samples = all_samples(tmp_path / "out")
    assert len(samples) == 255  # every message after the first answers the one before it
    for sample in samples:
        index = int(sample["messages"][-1]["content"].rsplit("(", 1)[1].rstrip(")"))
        previous = sample["messages"][-2]["content"]
        assert previous == f"{lines[(index - 1) % 6]} ({index - 1})"  # a reply to "1": the nearest earlier message


# Runs the CLI on one core (so that `prepare` reads in this one process, no reader process beside it) and prints
# its peak RSS last on stderr; VmHWM is the exec'd program's own (wait4's ru_maxrss would count the forking test
# process's memory too).
_MEASURED_CLI = ("import atexit, os, runpy, sys\n"
                 "os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])\n"
                 "atexit.register(lambda: print(next(line for line in open('/proc/self/status')"
                 " if line.startswith('VmHWM')), file=sys.stderr))\n"
                 "sys.argv[0] = 'sobesednik'\n"
                 "runpy.run_module('sobesednik', run_name='__main__')")


def _peak_rss(arguments: list[str]) -> int:
    """Peak resident bytes of `sobesednik ARGUMENTS` in a process of its own."""
    result = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *arguments], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stderr.strip().splitlines()[-1].split()[1]) * 1024  # "VmHWM:  123 kB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc/self/status (VmHWM)")
def test_one_huge_message_costs_memory_of_its_size_not_twenty_times_it(make_export: Callable[..., Path],
                                                                      tmp_path: Path):
    # 44 MB of short Cyrillic words: `str.split` alone made 4M string objects of it, 10-20 times the text.
    huge = "слово " * 4_000_000
    messages = [msg(1, "user1", "привет как дела"), msg(2, "user2", huge), msg(3, "user1", "ответ на длинное"),
                msg(4, "user2", "коротко"), msg(5, "user1", "и ещё")]
    small = make_export([message for message in messages if message["id"] != 2])
    big = make_export(messages)
    base = ["prepare", "--no-progress", "--max-chars", "100", "--valid", "0", "--test", "0"]
    big_rss = _peak_rss([*base, str(big), "--out", str(tmp_path / "big")])
    extra = big_rss - _peak_rss([*base, str(small), "--out", str(tmp_path / "small")])
    assert extra < 5 * big.stat().st_size, f"{extra / 1e6:.0f} MB more for a {big.stat().st_size / 1e6:.0f} MB message"
    stats = json.loads((tmp_path / "big" / "stats.json").read_text(encoding="utf-8"))
    assert stats["dropped"]["reply_too_long"] == 1  # the huge reply, cut while reading, still counts as too long
    replies = [row["messages"][-1]["content"] for row in read_jsonl(tmp_path / "big" / "train.jsonl")]
    assert replies == ["коротко", "и ещё"]  # "ответ на длинное" answers the huge turn only: context too long


def test_a_reply_too_short_alone_counts_when_its_turn_is_long_enough(make_export: Callable[..., Path], tmp_path: Path):
    # The reader judges each message as a reply by itself; a turn that several messages make is judged as a whole.
    path = make_export([msg(1, "usera", "как дела у тебя", minute=0), msg(2, "userb", "да", minute=1),
                        msg(3, "usera", "а завтра?", minute=2), msg(4, "userb", "ну", minute=3),
                        msg(5, "userb", "да", minute=3.1)])
    stats = run_prepare(path, tmp_path / "data", min_chars=5)
    assert stats["dropped"]["reply_too_short"] == 1
    assert sorted(row["messages"][-1]["content"] for row in all_samples(tmp_path / "data")) == ["а завтра?", "ну\nда"]
