"""Benchmark `sobesednik prepare` against a naive baseline on a synthetic Telegram export.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/prepare.py              # 1,000,000 messages, ~0.5 GB
    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/prepare.py --quick --cores 1   # 200,000, one core
    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/prepare.py --messages 100000 --layouts lines,account

The export (a group chat with replies, bursts, forwards, media, service messages, entity lists) is written to a
temp dir under /tmp once per layout (`LAYOUTS`: the same messages re-serialised), and for each layout `prepare`
and the baseline run one after the other, each in its own subprocess; wall time and peak RSS come from
`os.wait4` of that process. The baseline is what one writes first: `json.load` the whole file, build contexts in
Python loops (reply chain, else the previous messages), write with pandas. `prepare` does more (bursts, role merging,
filters, dedup, leakage-free split, stats, PNG, manifest) and reads the file as a stream.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

_TEXT = ("привет как дела что делаешь сегодня завтра вечером дача огурцы помидоры поехали машина электричка "
         "ладно хорошо давай может быть точно нет да конечно купить хлеб молоко шашлык баня погода дождь "
         "солнце ребята кто едет в субботу я возьму мангал а кто за рулём")
_WORDS = _TEXT.split(" ")
_NAMES = [f"Участник {index}" for index in range(40)]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 18)))


def _message(rng: random.Random, message_id: int, date: int) -> dict:
    author = rng.randrange(len(_NAMES))
    message: dict = {"id": message_id, "type": "message", "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(date)),
                     "date_unixtime": str(date), "from": _NAMES[author], "from_id": f"user{1000 + author}"}
    roll = rng.random()
    if roll < 0.01:
        return {"id": message_id, "type": "service", "date": message["date"], "date_unixtime": str(date),
                "actor": _NAMES[author], "actor_id": f"user{1000 + author}", "action": "pin_message",
                "message_id": max(1, message_id - 5), "text": "", "text_entities": []}
    if rng.random() < 0.3 and message_id > 1:
        message["reply_to_message_id"] = rng.randint(max(1, message_id - 40), message_id - 1)
    if roll < 0.03:
        message["forwarded_from"] = "Канал новостей"
    if roll < 0.08 and roll >= 0.03:
        message.update(photo="(File not included. Change data exporting settings to download.)",
                       width=1280, height=960, text="", text_entities=[])
        return message
    text = _text(rng)
    if rng.random() < 0.12:
        link = "https://example.com/" + rng.choice(_WORDS)
        message["text"] = [text + " ", {"type": "bold", "text": rng.choice(_WORDS)}, " смотри ",
                           {"type": "link", "text": link}]
        message["text_entities"] = [{"type": "plain", "text": text + " "}, {"type": "bold", "text": "жирный"},
                                    {"type": "plain", "text": " смотри "}, {"type": "link", "text": link}]
    else:
        message["text"] = text
        message["text_entities"] = [{"type": "plain", "text": text}]
    return message


LAYOUTS = ("telegram", "lines", "minified", "indent4", "account")
_CHAT_HEAD = {"name": "Синтетический чат", "type": "private_supergroup", "id": 1}
_ACCOUNT_HEAD = {"about": "Here is the data you requested.",
                 "personal_information": {"user_id": 1000, "first_name": "Участник", "last_name": "0",
                                          "phone_number": "+7 900 000 00 00", "bio": ""},
                 "contacts": {"about": "contacts", "list": [
                     {"user_id": 1000 + index, "first_name": name, "last_name": "", "phone_number": "",
                      "date": "2023-01-01T00:00:00", "date_unixtime": "1672531200"}
                     for index, name in enumerate(_NAMES)]}}


def _messages(count: int, seed: int) -> Iterator[dict]:
    rng = random.Random(seed)
    date = 1_700_000_000
    for message_id in range(1, count + 1):
        # Mostly quick exchanges, sometimes a pause that ends the conversation.
        date += rng.randint(5, 240) if rng.random() > 0.02 else rng.randint(3600, 40000)
        yield _message(rng, message_id, date)


def _indented(value: object, indent: int, level: int) -> str:
    """`value` as `json.dumps(indent=indent)` writes it when it sits `level` levels deep."""
    return json.dumps(value, ensure_ascii=False, indent=indent).replace("\n", "\n" + " " * (indent * level))


def write_export(path: Path, messages: int, layout: str = "telegram", seed: int = 0) -> None:
    """One export of the same `messages` (same seed) in a layout of `LAYOUTS`.

    telegram: Telegram Desktop's single chat (indent 1); lines: one compact message object per line (what tools
    that filter or re-save an export write); minified: all on one line; indent4: `json.dump(indent=4)`;
    account: Telegram Desktop's full-account export (indent 1) whose one chat is this chat.
    """
    if layout == "telegram" or layout == "indent4":
        indent = 1 if layout == "telegram" else 4
        head = json.dumps(_CHAT_HEAD, ensure_ascii=False, indent=indent)[:-2] + ",\n" + " " * indent
        opening, separator, closing = head + '"messages": [\n', ",\n", "\n" + " " * indent + "]\n}\n"
        pad = " " * (2 * indent)
        dump = lambda message: pad + _indented(message, indent, 2)  # noqa: E731
    elif layout == "account":
        head = _indented(_ACCOUNT_HEAD, 1, 0)[:-2]
        chat = _indented(_CHAT_HEAD, 1, 3)
        chat = chat[: chat.rindex("\n")]  # without the closing brace: `messages` comes next
        opening = head + ',\n "chats": {\n  "about": "chats",\n  "list": [\n   ' + chat + ',\n    "messages": [\n'
        separator = ",\n"
        closing = '\n    ]\n   }\n  ]\n },\n "left_chats": {\n  "about": "left",\n  "list": []\n }\n}\n'
        dump = lambda message: "     " + _indented(message, 1, 5)  # noqa: E731
    elif layout in ("lines", "minified"):
        compact = {"ensure_ascii": False, "separators": (",", ":")}
        opening = json.dumps(_CHAT_HEAD, **compact)[:-1] + ',"messages":[' + ("\n" if layout == "lines" else "")
        separator = ",\n" if layout == "lines" else ","
        closing = "\n]}\n" if layout == "lines" else "]}"
        dump = lambda message: json.dumps(message, **compact)  # noqa: E731
    else:
        raise ValueError(f"layout {layout!r}: pick one of {', '.join(LAYOUTS)}")
    with path.open("w", encoding="utf-8") as out:
        out.write(opening)
        for index, message in enumerate(_messages(messages, seed)):
            out.write((separator if index else "") + dump(message))
        out.write(closing)


def baseline(export: Path, out: Path) -> None:
    """The naive way: whole file in memory, Python loops, pandas output."""
    import numpy as np
    import pandas as pd

    with export.open(encoding="utf-8") as file:
        data = json.load(file)
    chats = data["chats"]["list"] if "chats" in data else [data]
    messages = [message for chat in chats for message in chat["messages"]]
    by_id: dict[int, dict] = {}
    kept: list[dict] = []
    rows = []
    for message in messages:
        if message["type"] != "message" or "forwarded_from" in message or "via_bot" in message:
            continue
        text = message.get("text", "")
        if isinstance(text, list):
            text = "".join(part if isinstance(part, str) else part["text"] for part in text)
        text = " ".join(text.split())
        if not text:
            continue
        item = {"id": message["id"], "author": message.get("from_id"), "text": text,
                "date": int(message["date_unixtime"]), "reply": message.get("reply_to_message_id")}
        if item["reply"] in by_id:
            context, target = [], by_id[item["reply"]]
            while target is not None and len(context) < 3:
                context.insert(0, target)
                target = by_id.get(target["reply"])
        else:
            context = [m for m in kept[-3:] if item["date"] - m["date"] < 3600]
        by_id[item["id"]] = item
        kept.append(item)
        if context:
            turns = [{"role": "assistant" if m["author"] == item["author"] else "user", "content": m["text"]}
                     for m in context]
            rows.append({"messages": [*turns, {"role": "assistant", "content": text}],
                         "meta": {"message_ids": [m["id"] for m in context] + [item["id"]]}})
    frame = pd.DataFrame(rows)
    split = np.random.default_rng(0).random(len(frame))
    out.mkdir(parents=True, exist_ok=True)
    for name, mask in (("train", split < 0.9), ("valid", (split >= 0.9) & (split < 0.95)), ("test", split >= 0.95)):
        frame[mask].to_json(out / f"{name}.jsonl", orient="records", lines=True, force_ascii=False)


def _tree_rss(process: psutil.Process) -> int:
    """Bytes resident in a process and all its children right now (prepare forks a reader process)."""
    try:
        tree = [process, *process.children(recursive=True)]
        return sum(member.memory_info().rss for member in tree)
    except psutil.Error:
        return 0


def _run(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, children included) and peak RSS (MB) of one subprocess.

    Peak RSS is the larger of the kernel's peak for the biggest single process (`ru_maxrss` from `wait4`) and the
    peak sum over the process tree sampled every 50 ms, so a helper process cannot hide memory.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command)
    watched = psutil.Process(process.pid)
    tree_peak = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        tree_peak = max(tree_peak, _tree_rss(watched))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command} failed with {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, max(usage.ru_maxrss * 1024, tree_peak) / 1e6  # KiB on Linux


def _best(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The least wall and CPU time and the largest peak RSS of repeated runs of one command."""
    walls, cpus, peaks = zip(*runs, strict=True)
    return min(walls), min(cpus), max(peaks)


def _machine(messages: int) -> str:
    """The CPU, its class and how `prepare` would read `messages` here now, asked in a subprocess: a child's peak
    RSS (`ru_maxrss`) starts at its parent's, so this process must stay small (no torch, no sobesednik)."""
    script = ("import sys; from sobesednik.hardware import probe; "
              "from sobesednik.data.prepare import reads_in_parallel; "
              "parallel = reads_in_parallel(int(sys.argv[1]) * 400);"  # ~400 bytes per message in these exports
              "print(probe().describe() + '; prepare reads in ' + ('a forked reader process' if parallel else "
              "'one process') + ' now')")
    return subprocess.run([sys.executable, "-c", script, str(messages)], capture_output=True, text=True,
                          check=True).stdout.strip()


def _samples(out: Path) -> int:
    return sum(1 for split in ("train", "valid", "test") for _ in (out / f"{split}.jsonl").open(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the synthetic export")
    parser.add_argument("--quick", action="store_true", help="200,000 messages: every layout in a minute or two")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, of {', '.join(LAYOUTS)}")
    parser.add_argument("--cores", type=int, default=0,
                        help="run everything on this many cores (like taskset; 0: all this process may use)")
    parser.add_argument("--baseline-only", nargs=2, metavar=("EXPORT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each side per layout, alternating; the least wall and CPU time and the largest "
                             "peak RSS are reported (this VM's CPU time for the same run varies by a third)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (exports and outputs)")
    args = parser.parse_args()
    if args.baseline_only:
        baseline(Path(args.baseline_only[0]), Path(args.baseline_only[1]))
        return
    messages = 200_000 if args.quick else args.messages
    layouts = args.layouts.split(",")
    if args.cores:  # children inherit the affinity, so both sides see only these cores
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    cores = len(os.sched_getaffinity(0))
    print(f"{_machine(messages)}; {cores} core(s) usable, load average {os.getloadavg()[0]:.1f} at the start")

    work = Path(tempfile.mkdtemp(prefix="sobesednik-bench-", dir="/tmp"))
    rows = []
    try:
        for layout in layouts:
            export = work / f"{layout}.json"
            write_export(export, messages, layout)
            ours_command = [sys.executable, "-m", "sobesednik", "prepare", str(export), "--out", str(work / "ours"),
                            "--no-progress"]
            naive_command = [sys.executable, __file__, "--baseline-only", str(export), str(work / "naive")]
            runs = [(_run(ours_command), _run(naive_command)) for _ in range(args.repeats)]
            ours, naive = (_best([pair[side] for pair in runs]) for side in (0, 1))
            rows.append((layout, export.stat().st_size / 1e6, ours, naive, _samples(work / "ours"),
                         _samples(work / "naive")))
            export.unlink()
            print(f"{layout}: done", flush=True)
        print(f"\n{messages:,} messages, {cores} core(s), best of {args.repeats}; time and peak RSS of prepare / "
              f"the baseline (json.load + loops + pandas)")
        # On a shared box wall time also counts waiting for a core; the CPU-time ratio is the steadier one.
        print(f"{'layout':10}{'MB':>6}{'wall s':>14}{'CPU s':>14}{'peak RSS MB':>16}{'faster':>8}{'in CPU':>8}"
              f"{'RSS of':>8}{'samples':>18}")
        for layout, size, ours, naive, ours_samples, naive_samples in rows:
            print(f"{layout:10}{size:>6.0f}{ours[0]:>7.1f}{naive[0]:>7.1f}{ours[1]:>7.1f}{naive[1]:>7.1f}"
                  f"{ours[2]:>8.0f}{naive[2]:>8.0f}{naive[0] / ours[0]:>7.2f}x{naive[1] / ours[1]:>7.2f}x"
                  f"{ours[2] / naive[2]:>8.3f}{ours_samples:>9,}{naive_samples:>9,}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
