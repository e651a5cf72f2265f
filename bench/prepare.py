"""Benchmark `sobesednik prepare` against a naive baseline on a synthetic Telegram export.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/prepare.py              # 1,000,000 messages, ~0.5 GB
    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/prepare.py --messages 100000

The export (a group chat with replies, bursts, forwards, media, service messages, entity lists) is written to a
temp dir under /tmp. Each side runs in its own subprocess; wall time and peak RSS come from `os.wait4` of that
process. The baseline is what one writes first: `json.load` the whole file, build contexts in Python loops
(reply chain, else the previous messages), write with pandas. `prepare` does more (bursts, role merging,
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


def write_export(path: Path, messages: int, seed: int = 0) -> None:
    """A single-chat export laid out like Telegram Desktop's (indent 1, one key per line)."""
    rng = random.Random(seed)
    date = 1_700_000_000
    with path.open("w", encoding="utf-8") as out:
        out.write('{\n "name": "Синтетический чат",\n "type": "private_supergroup",\n "id": 1,\n "messages": [\n')
        for message_id in range(1, messages + 1):
            # Mostly quick exchanges, sometimes a pause that ends the conversation.
            date += rng.randint(5, 240) if rng.random() > 0.02 else rng.randint(3600, 40000)
            body = json.dumps(_message(rng, message_id, date), ensure_ascii=False, indent=1)
            out.write("  " + body.replace("\n", "\n  ") + (",\n" if message_id < messages else "\n"))
        out.write(" ]\n}\n")


def baseline(export: Path, out: Path) -> None:
    """The naive way: whole file in memory, Python loops, pandas output."""
    import numpy as np
    import pandas as pd

    with export.open(encoding="utf-8") as file:
        messages = json.load(file)["messages"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the synthetic export")
    parser.add_argument("--baseline-only", nargs=2, metavar=("EXPORT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (export and outputs)")
    args = parser.parse_args()
    if args.baseline_only:
        baseline(Path(args.baseline_only[0]), Path(args.baseline_only[1]))
        return

    work = Path(tempfile.mkdtemp(prefix="sobesednik-bench-", dir="/tmp"))
    try:
        export = work / "result.json"
        start = time.perf_counter()
        write_export(export, args.messages)
        size_mb = export.stat().st_size / 1e6
        print(f"export: {args.messages:,} messages, {size_mb:.0f} MB, written in {time.perf_counter() - start:.0f} s")
        ours = _run([sys.executable, "-m", "sobesednik", "prepare", str(export), "--out", str(work / "ours"),
                     "--no-progress"])
        naive = _run([sys.executable, __file__, "--baseline-only", str(export), str(work / "naive")])
        samples = {side: sum(1 for split in ("train", "valid", "test")
                             for _ in (work / side / f"{split}.jsonl").open(encoding="utf-8"))
                   for side in ("ours", "naive")}
        print(f"{'':10}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>14}{'samples':>10}")
        for name, side, run in (("prepare", "ours", ours), ("baseline", "naive", naive)):
            print(f"{name:10}{run[0]:>10.1f}{run[1]:>10.1f}{run[2]:>14.0f}{samples[side]:>10,}")
        print(f"prepare is {naive[0] / ours[0]:.2f}x faster in wall time, {naive[1] / ours[1]:.2f}x in CPU time, "
              f"and needs {ours[2] / naive[2]:.3f} of the baseline's peak RSS")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
