"""The `prepare` stage: Telegram exports → `train/valid/test.jsonl`, stats and a manifest in one directory.

    sobesednik prepare examples/chat_export/result.json --out data/
    prepare(PrepareSettings(exports=[Path("result.json")], out=Path("data")))

One pass over each export (a stream: memory grows with the kept text, not with the file) feeds the
`DialogueBuilder`; each candidate is cleaned, deduplicated and spooled as a JSON line with its conversation
group. When everything is read the groups are split (they are only complete then: a late reply can join two
conversations) and the spool is routed into the three files (and every author's train replies into
`speakers.jsonl`). This module is the only writer of the dataset.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, compress, islice, pairwise
from operator import ne
from pathlib import Path
from typing import BinaryIO

import orjson

from sobesednik import __version__
from sobesednik.data.events import read_events
from sobesednik.data.filters import UNCHECKED, Deduplicator, reply_drop_reason, trim_context
from sobesednik.data.privacy import NameMasker
from sobesednik.data.settings import PrepareSettings
from sobesednik.data.split import SPLITS, Groups, assign_splits
from sobesednik.data.stats import Stats, write_stats
from sobesednik.data.telegram_export import ExportStream
from sobesednik.data.threads import Candidate, DialogueBuilder
from sobesednik.errors import ConfigError, DatasetError, ExportFormatError

_PROGRESS_MIN_BYTES = 8 << 20  # smaller inputs finish before a bar would be worth drawing
_PARALLEL_MIN_BYTES = 8 << 20  # below this, starting the reader process costs more than it saves
# The reader process pays only on a second idle core: with the fast path the builder is the bottleneck, and
# on one core (taskset -c 0, a one-CPU container) or a busy box the two processes only share time and add the
# pipe's pickling (docs/benchmarks.md: 200,000 messages on a loaded 2-core box, 6.7-7.2 s CPU in one process vs
# 6.9-8.6 s forked). "Idle" is the cores this process may use minus what other work keeps busy right now
# (`_busy_cores`); on an idle 2-core box forking took 4.2-4.8 s wall against 5.3-5.8 s in one process.
_PARALLEL_MIN_FREE_CORES = 1.5
_BUSY_SAMPLE_S = 0.1  # how long `_busy_cores` watches the CPUs; prepare forks only for inputs of seconds
_SPOOL = ".prepare-spool.jsonl"
_BUFFER = 1 << 20  # bytes; the default 8 KB buffer costs a system call every ~20 samples
# Every author's train-split replies, `{"speaker": author id, "text": reply}` per line: what the persona-fidelity
# authorship model (training/fidelity.py) is fitted on, with no valid/test text in it.
SPEAKERS_FILE = "speakers.jsonl"


@dataclass(frozen=True)
class PrepareResult:
    """Where the dataset went and its statistics (the content of `stats.json`)."""

    out: Path
    stats: dict


class _Spool:
    """Accepted samples as JSON lines in a temp file, with what the split needs per sample in compact arrays."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("wb", buffering=_BUFFER)
        # Each sample's `speakers.jsonl` line, written now rather than parsed back out of the sample line when the
        # split is known: parsing 170,000 lines again cost 0.5 s, a dump of two strings costs a tenth of that.
        self.speakers_path = path.with_name(path.name + ".speakers")
        self.speakers_file = self.speakers_path.open("wb", buffering=_BUFFER)
        self.groups = array("q")
        self.authors = array("l")
        self.reply_lengths = array("l")
        self.context_turns = array("l")
        # Byte sizes of the lines of the two spool files, so that runs of them can be copied by offset.
        self.line_sizes = array("q")
        self.speaker_line_sizes = array("q")
        self.author_index: dict[str, int] = {}

    def close(self) -> None:
        self.file.close()
        self.speakers_file.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.speakers_path.unlink(missing_ok=True)


def _sample_sink(settings: PrepareSettings, stats: Stats, spool: _Spool) -> Callable[[Candidate], None]:
    is_duplicate = Deduplicator().is_duplicate
    min_chars, max_chars = settings.min_chars, settings.max_chars
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    # Bound once: this runs for every candidate (170,000 per 200,000 messages), and the spool's appends and
    # writes were a fifth of its time as method calls through the object.
    write, write_speaker = spool.file.write, spool.speakers_file.write
    add_group, add_author = spool.groups.append, spool.authors.append
    add_length, add_turns = spool.reply_lengths.append, spool.context_turns.append
    add_size, add_speaker_size = spool.line_sizes.append, spool.speaker_line_sizes.append
    author_index = spool.author_index

    def accept(candidate: Candidate) -> None:
        context = candidate.context
        # The texts once, for the length check and then the dedup key (two `map`s over the turns cost more).
        texts = [text for _, text, _ in context]
        if max(map(len, texts)) > max_chars:  # rare: the whole trim only then
            context = trim_context(context, max_chars=max_chars)
            if not context:
                stats.dropped["context_too_long"] += 1
                return
            texts = [text for _, text, _ in context]
        reply = candidate.reply
        reason = candidate.reply_drop_reason
        if reason == UNCHECKED:
            reason = reply_drop_reason(reply, min_chars=min_chars, max_chars=max_chars)
        if reason is not None:
            stats.dropped[reason] += 1
            return
        texts.append(reply)
        if is_duplicate(tuple(texts)):
            stats.dropped["duplicate"] += 1
            return
        messages = [{"role": role, "content": text} for role, text, _ in context]
        messages.append({"role": "assistant", "content": reply})
        ids = [message_id for _, _, turn_ids in context for message_id in turn_ids]
        ids += candidate.reply_ids
        meta = {"chat_id": candidate.chat_id, "thread": candidate.thread, "message_ids": ids, "date": candidate.date}
        author = candidate.author
        add_size(write(dumps({"messages": messages, "meta": meta}, option=newline)))
        add_speaker_size(write_speaker(dumps({"speaker": author, "text": reply}, option=newline)))
        add_group(candidate.group)
        index = author_index.get(author)
        if index is None:
            index = author_index[author] = len(author_index)
        add_author(index)
        add_length(len(reply))
        add_turns(len(context))

    return accept


@contextmanager
def _without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while reading.

    Reading keeps hundreds of thousands of small containers alive (the message store, turns, id lists), and the
    collector would walk all of them again and again: measured, it costs ~40% of the read time. The hot path
    makes no reference cycles, so plain reference counting frees everything it drops.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _progress(settings: PrepareSettings, streams: list[ExportStream]) -> Iterator[Callable[[int], None] | None]:
    total = sum(stream.path.stat().st_size for stream in streams)
    if not settings.progress or total < _PROGRESS_MIN_BYTES:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = ("reading export", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("read", total=total)
        yield lambda size: progress.advance(task, size)


def reads_in_parallel(total_bytes: int) -> bool:
    """Whether `prepare` reads exports of `total_bytes` in a forked reader process here, now (see
    `_PARALLEL_MIN_FREE_CORES`)."""
    if total_bytes < _PARALLEL_MIN_BYTES:
        return False
    usable = _usable_cores()
    # Fewer usable cores than that can never be idle enough: no need to watch them for `_BUSY_SAMPLE_S`.
    return (len(usable) >= _PARALLEL_MIN_FREE_CORES
            and len(usable) - _busy_cores(usable) >= _PARALLEL_MIN_FREE_CORES)


def _usable_cores() -> set[int]:
    """The cores this process may run on (taskset, cpusets)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # macOS and Windows have no affinity call; all cores are usable there
        return set(range(os.cpu_count() or 1))


def _busy_cores(cpus: set[int]) -> float:
    """How many of `cpus` are busy: their non-idle share over `_BUSY_SAMPLE_S` (Linux `/proc/stat`), else the
    1-minute load average, which lags: the command run just before still counts for a minute."""
    try:
        before = _cpu_ticks(cpus)
        time.sleep(_BUSY_SAMPLE_S)
        after = _cpu_ticks(cpus)
    except (OSError, ValueError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows): count every usable core as idle
            return 0.0
    busy = 0.0
    for cpu, (idle, total) in after.items():
        elapsed = total - before[cpu][1]
        busy += 1 - (idle - before[cpu][0]) / elapsed if elapsed > 0 else 0.0
    return busy


def _cpu_ticks(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) clock ticks so far of each of `cpus`, from `/proc/stat`."""
    ticks = {}
    for line in Path("/proc/stat").read_text(encoding="ascii").splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
            ticks[int(name[3:])] = (idle + iowait, user + nice + system + idle + iowait + irq + softirq + steal)
    if not ticks:
        raise ValueError("no per-CPU lines in /proc/stat")
    return ticks


def _read(settings: PrepareSettings, streams: list[ExportStream], builder: DialogueBuilder, stats: Stats,
          on_bytes: Callable[[int], None] | None) -> None:
    parallel = reads_in_parallel(sum(stream.path.stat().st_size for stream in streams))
    chat_names: list[str] = []
    selected = False
    kept = 0  # counted here and added once: an attribute update per message costs more than the rest of this loop
    add = builder.add
    for event in read_events(streams, settings, stats.quirks, parallel=parallel, on_bytes=on_bytes):
        kind = event[0]
        if kind == "messages":
            messages = event[1]
            kept += len(messages)
            for message in messages:
                add(message)
        elif kind == "skip":
            stats.messages_read += 1
            _, reason, extra = event
            stats.skipped[reason] += 1
            if reason == "service" and extra is not None:
                builder.note_topic(extra)
            elif reason in ("forwarded", "via_bot"):
                builder.break_conversation(extra)
        elif kind == "chat":
            _, chat, selected = event
            chat_names.append(chat.name)
            stats.chats += selected
            builder.start_chat(chat.id)
        else:  # "end" of a file
            _, index, sha256 = event
            streams[index].sha256 = sha256
    stats.messages_read += kept
    stats.messages_kept += kept
    builder.finish()
    if settings.chat and not stats.chats:
        shown = ", ".join(repr(name) for name in chat_names[:10]) or "none"
        raise ConfigError(f"--chat {settings.chat} matches no chat; chats in the export: {shown}")


def _resolve_speakers(wanted: list[str], names: dict[str, set[str]]) -> set[str]:
    """Author ids for `--speaker` values, each an id ("user123" or "123") or a display name (any case)."""
    resolved: set[str] = set()
    for speaker in wanted:
        folded = speaker.casefold()
        matches = {author for author, seen in names.items()
                   if speaker in (author, f"user{author}") or author == f"user{speaker}"
                   or folded in {name.casefold() for name in seen}}
        if not matches:
            known = sorted(names, key=len)[:10]
            raise ConfigError(f"--speaker {speaker!r} matches no author id or name in the export; "
                              f"pass a from_id such as {', '.join(known)} or a display name")
        resolved |= matches
    return resolved


def _write_splits(settings: PrepareSettings, spool: _Spool, groups: Groups, speakers: set[str], stats: Stats,
                  masker: NameMasker | None) -> None:
    wanted = {spool.author_index[author] for author in speakers if author in spool.author_index}
    keep = [not speakers or author in wanted for author in spool.authors]
    roots = [groups.find(group) for group in spool.groups]
    per_root: dict[int, int] = {}
    for root, kept in zip(roots, keep, strict=True):
        if kept:
            per_root[root] = per_root.get(root, 0) + 1
    split_of = assign_splits(groups, per_root, valid=settings.valid, test=settings.test, by=settings.split_by,
                             seed=settings.seed)
    author_of = {index: author for author, index in spool.author_index.items()}
    # A conversation without a target sample is in no split, so its text cannot leak into valid/test; a kept
    # sample's conversation always has a split.
    split_of_sample = [split_of.get(root, "train") for root in roots]
    selections = {SPEAKERS_FILE: (spool.speakers_path, spool.speaker_line_sizes,
                                  [split == "train" for split in split_of_sample])}
    for name in SPLITS:
        selections[f"{name}.jsonl"] = (spool.path, spool.line_sizes,
                                       [kept and split == name for split, kept in zip(split_of_sample, keep,
                                                                                       strict=True)])
    for name, (source, sizes, selected) in selections.items():
        with source.open("rb", buffering=_BUFFER) as lines, \
                (settings.out / name).open("wb", buffering=_BUFFER) as out:
            if masker is None and _copy_runs(lines, out, sizes, selected):
                continue
            # One pass over the spool per output file, a C loop (`compress` + `writelines`): a Python loop over
            # 170,000 lines that picked each one's file took longer than reading them.
            chosen_lines = compress(lines, selected)
            if masker is not None:
                mask = masker.mask_speaker_line if name == SPEAKERS_FILE else masker.mask_sample
                chosen_lines = map(mask, chosen_lines)
            out.writelines(chosen_lines)
    chosen = list(compress(split_of_sample, keep))
    # Counted in bulk (C loops over the arrays) rather than one `Stats.count_sample` call per sample.
    if len(chosen) < len(keep):
        stats.dropped["not_speaker"] += len(keep) - len(chosen)
    stats.splits.update(chosen)
    stats.reply_lengths.update(compress(spool.reply_lengths, keep))
    stats.context_turns.update(compress(spool.context_turns, keep))
    stats.target_authors.update(author_of[index] for index in set(compress(spool.authors, keep)))


def _copy_runs(source: BinaryIO, out: BinaryIO, sizes: array, selected: list[bool]) -> bool:
    """Copy the `selected` lines of `source` (their byte sizes: `sizes`) to `out` inside the kernel, one
    `os.copy_file_range` per run of consecutive selected lines, so the lines never become Python objects.

    Conversations keep their samples together, so a split is a few hundred runs; reading and writing 170,000
    lines one by one cost 0.3 s. Returns False, `out` untouched, where the OS has no such call for these files
    (not Linux; older kernels across file systems).
    """
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return False
    count = len(selected)
    offsets = list(accumulate(sizes, initial=0))
    # Where a run starts or ends: the lines whose selection differs from the line before.
    edges = [0, *compress(range(1, count), map(ne, islice(selected, 1, None), selected)), count]
    first = True
    for start, end in pairwise(edges):
        if start == end or not selected[start]:  # equal only when there are no lines at all
            continue
        position, left = offsets[start], offsets[end] - offsets[start]
        while left:
            try:
                copied = copy(source.fileno(), out.fileno(), left, position)
            except OSError as error:
                if first and error.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    return False
                raise
            if not copied:
                raise OSError(f"{source.name} ended {left} bytes early")
            first = False
            position += copied
            left -= copied
    return True


def _write_manifest(settings: PrepareSettings, streams: list[ExportStream], data: dict, targets: list[str]) -> None:
    manifest = {
        "sobesednik_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": [{"path": str(stream.path), "bytes": stream.path.stat().st_size, "sha256": stream.sha256}
                   for stream in streams],
        "options": settings.model_dump(mode="json"),
        "samples": data["splits"],
        # Author ids whose replies are the samples' targets; one id when `--speaker` picked one person.
        "targets": targets,
        "command": "sobesednik prepare " + " ".join(str(stream.path) for stream in streams)
        + f" --out {settings.out}",
    }
    (settings.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")


def prepare(settings: PrepareSettings) -> PrepareResult:
    """Run the stage; raises `ExportFormatError`, `ConfigError` or `DatasetError` on input a user must fix."""
    if not settings.exports:
        raise ConfigError("no export given: sobesednik prepare path/to/result.json --out DIR")
    streams = [ExportStream(path) for path in settings.exports]
    if settings.out.exists() and not settings.out.is_dir():
        raise ConfigError(f"--out {settings.out} is a file; give a directory (it is created when missing)")
    settings.out.mkdir(parents=True, exist_ok=True)

    stats = Stats()
    groups = Groups()
    spool = _Spool(settings.out / _SPOOL)
    try:
        builder = DialogueBuilder(settings, groups, stats, _sample_sink(settings, stats, spool))
        with _without_gc(), _progress(settings, streams) as on_bytes:
            _read(settings, streams, builder, stats, on_bytes)
        spool.close()
        stats.conversations = len(groups)
        stats.authors = {author: sorted(names) for author, names in builder.names.items()}
        if not stats.messages_kept:
            files = ", ".join(str(path) for path in settings.exports)
            raise ExportFormatError(f"{files}: no message with usable text (read {stats.messages_read} messages: "
                                    f"{dict(stats.skipped.most_common(4))}); export a chat with text messages")
        speakers = _resolve_speakers(settings.speaker, builder.names)
        # Names are masked here, not while reading: only now is every participant's display name known.
        masker = NameMasker(name for names in builder.names.values() for name in names) if settings.mask_pii else None
        _write_splits(settings, spool, groups, speakers, stats, masker)
        if masker is not None:
            stats.masked = masker.counts
    finally:
        spool.remove()
    if not stats.samples:
        raise DatasetError(f"no samples left from {stats.messages_kept} usable messages "
                           f"(dropped: {dict(stats.dropped.most_common(4))}); see docs/data.md for the flags "
                           f"that keep more (--gap-minutes, --min-chars, --speaker)")
    data = write_stats(stats, settings.out, show_names=settings.show_names)
    _write_manifest(settings, streams, data, sorted(stats.target_authors))
    return PrepareResult(settings.out, data)

