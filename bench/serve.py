"""Benchmark of `sobesednik serve` against the usual way and against CTranslate2, on the ruDialoGPT-medium shape.

The model has ruDialoGPT-medium's architecture (GPT-2, 24 layers, 1024 wide, 50261-token vocabulary) with random
weights: speed does not depend on the weights. Every engine gets the same prompts, the model card's sampling
settings with n=1 and the same forced reply length (40 tokens: the closing token is masked until then), so
the differences come from the engine, not from doing less work. 16 simulated users each send a dialogue and
wait for the reply, `--rounds` times.

  ours-auto         `sobesednik serve` with its defaults (`--dtype auto --quantize auto`): what users get
  ours-fp32         `serve --dtype float32 --quantize none`
  ours-int8         `serve --quantize int8` (dynamic int8 linears)
  ours-bf16         `serve --dtype bfloat16` (oneDNN-packed where the CPU has native bf16)
  hf-generate       plain `transformers` `generate` on one left-padded batch of all 16 users, fp32, in-process
  hf-generate-bf16  the same with bf16 weights
  naive             a FastAPI endpoint calling `model.generate` per request in fp32 (the usual way)
  ct2               CTranslate2 int8 `generate_batch` of all 16 users at once, in-process (fastest-engine reference)

A mode this CPU cannot run well is skipped with a line saying why (bf16 without native bf16 only emulates it;
int8 without an int8 engine; ct2 without the package). Prints the CPU, its class and the path `auto` picks,
aggregate tokens/s, p50/p95 latency and peak RSS of each engine, the ratios of ours against naive and against
`transformers` at the same precision, batch-1 tokens/s of ours beside this machine's memory-bandwidth bound,
and the cost of the model card's 3-beam / 3-sequence setting per reply.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/serve.py            # ~10 min on 2 cores
    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/serve.py --quick    # 1 round, fewer modes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from sobesednik.modeling.defaults import RECOMMENDED_GENERATION

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # service_process, agreement

USERS = 16
VOCAB = 50261  # ruDialoGPT-medium's vocabulary
REPLY_TOKENS = 40  # the model card's max_new_tokens, forced
PROMPT_WORDS = (20, 60)  # words per simulated dialogue
OURS = {"ours-auto": (), "ours-fp32": ("--dtype", "float32", "--quantize", "none"),
        "ours-int8": ("--quantize", "int8"), "ours-bf16": ("--dtype", "bfloat16")}
HF = {"hf-generate": "float32", "hf-generate-bf16": "bfloat16"}
MODES = (*OURS, *HF, "naive", "ct2")
CARD = {name: RECOMMENDED_GENERATION[name]
        for name in ("temperature", "top_p", "top_k", "repetition_penalty", "no_repeat_ngram_size")}


def build_model(out: Path) -> Path:
    """ruDialoGPT-medium-shaped GPT-2, random init, with the tiny tokenizer of the sample export."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from sobesednik.modeling.model_dir import save_model_dir
    from sobesednik.modeling.tiny import TinyModelConfig, train_tokenizer

    tokenizer = train_tokenizer(_texts(), TinyModelConfig())
    # ruDialoGPT's vocabulary size, so that CTranslate2's converter (which checks it) takes the model too.
    tokenizer.add_tokens([f"<t{i}>" for i in range(VOCAB - len(tokenizer))])
    config = GPT2Config(vocab_size=VOCAB, n_positions=2048, n_embd=1024, n_layer=24, n_head=16,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return save_model_dir(GPT2LMHeadModel(config), tokenizer, out)


def _texts() -> list[str]:
    messages = json.loads((REPO / "examples/chat_export/result.json").read_text(encoding="utf-8"))["messages"]
    return [m["text"] for m in messages if isinstance(m.get("text"), str) and m["text"].strip()]


def dialogues(count: int) -> list[list[dict[str, str]]]:
    words = " ".join(_texts()).split()
    rng = random.Random(0)
    result = []
    for _ in range(count):
        start = rng.randrange(len(words) - 100)
        text = " ".join(words[start:start + rng.randint(*PROMPT_WORDS)])
        result.append([{"role": "user", "content": text[: len(text) // 2]},
                       {"role": "assistant", "content": "ага"}, {"role": "user", "content": text[len(text) // 2:]}])
    return result


class PeakRss:
    """Polls a process tree's resident memory in a thread; `peak` in GiB."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self._stop = psutil.Process(pid), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [self.process, *self.process.children(recursive=True)])
            except psutil.Error:
                break
            self.peak = max(self.peak, rss / 2**30)
            time.sleep(0.1)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


async def closed_loop(url: str, users: int, rounds: int, body: dict, stagger: float = 0.0,
                      models: list[str] | None = None) -> tuple[float, list[float], int]:
    """`users` clients, each sending `rounds` requests one after another, user i starting `i * stagger` s late
    and naming `models[i % len(models)]` when given; (wall s, latencies s, tokens)."""
    prompts = dialogues(users * rounds)
    latencies: list[float] = []
    tokens = 0

    async def user(index: int, client: httpx.AsyncClient) -> None:
        nonlocal tokens
        await asyncio.sleep(index * stagger)
        for r in range(rounds):
            start = time.perf_counter()
            model = {"model": models[index % len(models)]} if models else {}
            response = await client.post(url, json={**body, **model, "messages": prompts[r * users + index]})
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)
            tokens += response.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(timeout=3600) as client:
        start = time.perf_counter()
        await asyncio.gather(*(user(i, client) for i in range(users)))
    return time.perf_counter() - start, latencies, tokens


def report(name: str, wall: float, latencies: list[float], tokens: int, rss: float) -> dict:
    latencies = sorted(latencies)
    row = {"engine": name, "tokens_per_s": tokens / wall, "p50_s": statistics.median(latencies),
           "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], "peak_rss_gib": rss,
           "tokens": tokens}
    print(f"{name:12s} {row['tokens_per_s']:7.1f} tok/s  p50 {row['p50_s']:6.2f} s  p95 {row['p95_s']:6.2f} s  "
          f"peak RSS {rss:5.2f} GiB", flush=True)
    return row


def run_ours(model: Path, mode: str, users: int, rounds: int, stagger: float = 0.0) -> dict:
    from service_process import run_service

    args = OURS[mode]
    # A shared machine can be many times slower than a quiet one: no 504 from the service's request timeout.
    with run_service(model, args=(*args, "--max-batch-size", str(USERS), "--max-wait-ms", "20",
                                  "--request-timeout-s", "3600"),
                     ready_timeout=600) as service:
        rss = PeakRss(service.process.pid)
        body = {"max_tokens": REPLY_TOKENS, "min_tokens": REPLY_TOKENS, **CARD}
        wall, latencies, tokens = asyncio.run(closed_loop(f"{service.url}/v1/chat/completions", users, rounds, body,
                                                          stagger))
        name = f"{mode}@{users}" + (f" every {stagger:g} s" if stagger else "")
        return report(name, wall, latencies, tokens, rss.stop())


# ---- (b) the naive endpoint, run as `bench/serve.py --child-naive MODEL PORT` -------------------------------

def naive_app(model_dir: Path):  # -> FastAPI (imported inside: the parent process never needs it)
    import torch
    from fastapi import FastAPI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sobesednik.dialogue import render

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:  # a plain `def`: FastAPI runs it in its thread pool, one generate per request
        ids = tokenizer(render(body["messages"], add_generation_prompt=True), return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, do_sample=True, max_new_tokens=REPLY_TOKENS, min_new_tokens=REPLY_TOKENS,
                                 top_k=CARD["top_k"], top_p=CARD["top_p"], temperature=CARD["temperature"],
                                 repetition_penalty=CARD["repetition_penalty"],
                                 no_repeat_ngram_size=CARD["no_repeat_ngram_size"], pad_token_id=tokenizer.pad_token_id)
        generated = out.shape[1] - ids["input_ids"].shape[1]
        return {"choices": [{"message": {"content": tokenizer.decode(out[0, ids["input_ids"].shape[1]:])}}],
                "usage": {"completion_tokens": generated}}

    return app


def run_naive(model: Path, users: int, rounds: int) -> dict:
    from service_process import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--child-naive", str(model), str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(1200):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        rss = PeakRss(process.pid)
        wall, latencies, tokens = asyncio.run(closed_loop(f"{url}/v1/chat/completions", users, rounds, {}))
        return report(f"naive@{users}", wall, latencies, tokens, rss.stop())
    finally:
        process.terminate()
        process.wait(30)


# ---- (c) CTranslate2 int8, run as `bench/serve.py --child-ct2 MODEL USERS ROUNDS` ---------------------------

def child_ct2(model: Path, users: int, rounds: int) -> None:
    import ctranslate2
    from transformers import AutoTokenizer

    from sobesednik.dialogue import render

    converted = model.parent / "ct2-int8"
    if not (converted / "model.bin").is_file():
        ctranslate2.converters.TransformersConverter(str(model)).convert(str(converted), quantization="int8",
                                                                         force=True)
    generator = ctranslate2.Generator(str(converted), device="cpu", compute_type="int8")
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [tokenizer.convert_ids_to_tokens(tokenizer.encode(render(d, add_generation_prompt=True)))
               for d in dialogues(users * rounds)]
    latencies, tokens = [], 0
    start = time.perf_counter()
    for r in range(rounds):
        batch_start = time.perf_counter()
        results = generator.generate_batch(
            prompts[r * users:(r + 1) * users], max_length=REPLY_TOKENS, min_length=REPLY_TOKENS,
            sampling_topk=CARD["top_k"], sampling_topp=CARD["top_p"], sampling_temperature=CARD["temperature"],
            repetition_penalty=CARD["repetition_penalty"], no_repeat_ngram_size=CARD["no_repeat_ngram_size"],
            include_prompt_in_result=False)
        latencies += [time.perf_counter() - batch_start] * users  # every user waits for the whole batch
        tokens += sum(len(result.sequences_ids[0]) for result in results)
    print(json.dumps({"wall": time.perf_counter() - start, "latencies": latencies, "tokens": tokens}))


def run_ct2(model: Path, users: int, rounds: int) -> dict:
    process = subprocess.Popen([sys.executable, __file__, "--child-ct2", str(model), str(users), str(rounds)],
                               stdout=subprocess.PIPE, text=True)
    rss = PeakRss(process.pid)
    output, _ = process.communicate()
    result = json.loads(output.strip().splitlines()[-1])
    return report(f"ct2-int8@{users}", result["wall"], result["latencies"], result["tokens"], rss.stop())


# ---- (d) plain transformers on one batch, run as `bench/serve.py --child-hf MODEL USERS ROUNDS DTYPE` -----------

def child_hf(model_dir: Path, users: int, rounds: int, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sobesednik.dialogue import render

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    texts = [render(d, add_generation_prompt=True) for d in dialogues(users * rounds)]
    common = {"do_sample": True, "top_k": CARD["top_k"], "top_p": CARD["top_p"], "temperature": CARD["temperature"],
              "repetition_penalty": CARD["repetition_penalty"], "no_repeat_ngram_size": CARD["no_repeat_ngram_size"],
              "pad_token_id": tokenizer.pad_token_id}
    latencies, tokens = [], 0
    with torch.inference_mode():
        warm = tokenizer(texts[:1], return_tensors="pt", add_special_tokens=False)
        model.generate(**warm, **common, max_new_tokens=2, min_new_tokens=2)
        start = time.perf_counter()
        for r in range(rounds):
            batch_start = time.perf_counter()
            ids = tokenizer(texts[r * users:(r + 1) * users], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            out = model.generate(**ids, **common, max_new_tokens=REPLY_TOKENS, min_new_tokens=REPLY_TOKENS)
            latencies += [time.perf_counter() - batch_start] * users  # every user waits for the whole batch
            tokens += (out.shape[1] - ids["input_ids"].shape[1]) * users
    print(json.dumps({"wall": time.perf_counter() - start, "latencies": latencies, "tokens": tokens}))


def run_hf(model: Path, mode: str, users: int, rounds: int) -> dict:
    command = [sys.executable, __file__, "--child-hf", str(model), str(users), str(rounds), HF[mode]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    rss = PeakRss(process.pid)
    output, _ = process.communicate()
    result = json.loads(output.strip().splitlines()[-1])
    return report(f"{mode}@{users}", result["wall"], result["latencies"], result["tokens"], rss.stop())


# ---- batch 1 against the memory-bandwidth bound, and the 3-beam / 3-sequence cost ---------------------------

def memory_bandwidth_gbs() -> float:
    """Copy bandwidth (bytes read + written per second) of a 512 MiB buffer, best of 5."""
    import torch

    source = torch.ones(2**27)  # 512 MiB of float32
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


def beam_cost(model: Path) -> dict:
    """Seconds per reply of the card's 3-beam / 3-sequence sampling against one sampled sequence (serve's auto
    path, batch 1)."""
    import torch

    from sobesednik.dialogue import render
    from sobesednik.inference.generator import Generator

    generator = Generator.load(model, dtype="auto", quantize="auto")
    ids = generator.tokenizer(render(dialogues(1)[0], add_generation_prompt=True), return_tensors="pt")
    common = {"do_sample": True, "max_new_tokens": REPLY_TOKENS, "min_new_tokens": REPLY_TOKENS,
              "top_k": CARD["top_k"], "top_p": CARD["top_p"], "temperature": CARD["temperature"],
              "repetition_penalty": CARD["repetition_penalty"], "no_repeat_ngram_size": CARD["no_repeat_ngram_size"],
              "pad_token_id": generator.tokenizer.pad_token_id}
    seconds = {}
    with torch.inference_mode():
        generator.model.generate(**ids, **{**common, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        for name, extra in {"1 sequence": {}, "3 beams x 3 sequences": {"num_beams": 3,
                                                                        "num_return_sequences": 3}}.items():
            start = time.perf_counter()
            generator.model.generate(**ids, **common, **extra)
            seconds[name] = time.perf_counter() - start
    print(f"model card's 3-beam/3-sequence reply (HF generate): {seconds['3 beams x 3 sequences']:.2f} s against "
          f"{seconds['1 sequence']:.2f} s for one sampled sequence "
          f"({seconds['3 beams x 3 sequences'] / seconds['1 sequence']:.1f}x)", flush=True)
    return seconds


def agreement(model: Path, replies: int = 8) -> dict:
    """Greedy top-1 agreement with fp32 of each path `auto` may pick here, and of int8 variants, on this model.

    Teacher-forced (`tests/agreement.py`) on fp32's own greedy replies to the bench dialogues, in one pass over
    each dialogue and step by step as a reply is decoded (dynamic int8 scales each call's rows: one pass scales
    the whole dialogue at once; `auto`'s int8 decoding steps only show step by step). A random model's logits
    are nearly flat, so a small error flips its argmax far more often than a trained model's: the figures are
    a pessimistic bound for ruDialoGPT.
    """
    import copy

    import torch
    from torch import nn

    from agreement import top1_agreement
    from sobesednik.dialogue import render
    from sobesednik.hardware import probe, serving_path
    from sobesednik.inference.optimize import (
        conv1d_to_linear,
        fuse_gelu,
        optimize_model,
        quantize_int8,
        quantize_int8_torch,
    )
    from sobesednik.modeling.load import load_model

    reference, tokenizer = load_model(str(model))
    reference.eval()
    sequences, lengths = [], []
    with torch.inference_mode():
        for dialogue in dialogues(replies):
            prompt = tokenizer.encode(render(dialogue, add_generation_prompt=True), add_special_tokens=False)
            out = reference.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=REPLY_TOKENS,
                                     min_new_tokens=REPLY_TOKENS, repetition_penalty=CARD["repetition_penalty"],
                                     pad_token_id=tokenizer.pad_token_id)
            sequences.append(out[0].tolist())
            lengths.append(len(prompt))

    def int8_variant(quantize: Callable[..., nn.Module], **options: Any) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            candidate = copy.deepcopy(reference)
            fuse_gelu(candidate)
            conv1d_to_linear(candidate)
            return quantize(candidate, **options)
        return build

    candidates = {}
    if probe().int8:
        candidates["int8 (serve's: ours where it builds, all linears)"] = lambda: optimize_model(
            copy.deepcopy(reference), dtype="float32", quantize="int8")
        candidates["int8 (serve's), lm_head fp32"] = int8_variant(quantize_int8, keep={"lm_head"})
        candidates["torch's int8, per tensor"] = int8_variant(quantize_int8_torch)
        candidates["torch's int8, per channel"] = int8_variant(quantize_int8_torch, per_channel=True)
    if probe().native_bf16:
        candidates["bf16 (serve's: packed where oneDNN has it)"] = lambda: optimize_model(
            copy.deepcopy(reference), dtype="bfloat16", quantize="none")
    candidates[f"auto ({serving_path('auto', 'auto').describe()})"] = lambda: optimize_model(
        copy.deepcopy(reference), dtype="auto", quantize="auto")
    result = {}
    for name, build in candidates.items():
        candidate = build()
        result[name] = {"one_pass": top1_agreement(reference, candidate, sequences, lengths),
                        "stepwise": top1_agreement(reference, candidate, sequences, lengths, stepwise=True)}
        print(f"greedy top-1 agreement with fp32, {name}: {result[name]['one_pass']:.3f} in one pass, "
              f"{result[name]['stepwise']:.3f} step by step ({replies} replies x {REPLY_TOKENS} tokens, random "
              "weights: pessimistic)", flush=True)
    return result


def skip_reason(mode: str) -> str | None:
    """Why `mode` cannot run (well) on this CPU, or None."""
    from sobesednik.hardware import probe

    capabilities = probe()
    if mode in ("ours-bf16", "hf-generate-bf16") and not capabilities.native_bf16:
        return f"CPU class {capabilities.cpu_class} has no native bf16: torch would only emulate it, slower than fp32"
    if mode == "ours-int8" and not capabilities.int8:
        return f"torch has no dynamic-int8 engine for CPU class {capabilities.cpu_class}"
    if mode == "ct2":
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            return "ctranslate2 is not installed (pip install ctranslate2)"
    return None


def print_ratios(rows: list[dict]) -> None:
    """Each of ours against naive and against `transformers` at the same precision (int8: against fp32)."""
    from sobesednik.hardware import serving_path

    by_name = {r["engine"].split("@")[0]: r for r in rows}
    auto = serving_path("auto", "auto")
    same_precision = {"ours-fp32": "hf-generate", "ours-int8": "hf-generate", "ours-bf16": "hf-generate-bf16",
                      "ours-auto": "hf-generate-bf16" if auto.dtype == "bfloat16" else "hf-generate"}
    for mode, baseline in same_precision.items():
        if mode not in by_name:
            continue
        ours = by_name[mode]
        parts = [f"{other} {ours['tokens_per_s'] / by_name[other]['tokens_per_s']:.2f}x"
                 for other in ("naive", baseline, "ct2-int8") if other in by_name]
        print(f"{mode} tokens/s against: " + ", ".join(parts), flush=True)


def main() -> None:
    from sobesednik.hardware import probe, serving_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, ours-auto against hf-generate, naive and "
                        "ct2, no beam measurement")
    parser.add_argument("--rounds", type=int, default=2, help="requests per user, one after another")
    parser.add_argument("--modes", help=f"comma-separated engines, from: {', '.join(MODES)} (default: all)")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/sobesednik-bench/rudialogpt-medium-random"))
    parser.add_argument("--agreement", action="store_true",
                        help="only measure greedy top-1 agreement with fp32 of the paths auto may pick, then stop")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--stagger", type=float, default=0.0,
                        help="seconds between users' first requests (0: all at once); ours only, then stop")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    modes = (args.modes or ("ours-auto,hf-generate,naive,ct2" if args.quick else ",".join(MODES))).split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {', '.join(sorted(unknown))}: use some of {', '.join(MODES)}")
    print(f"{probe().describe()}; serve's auto path here: {serving_path('auto', 'auto').describe()}", flush=True)
    model = build_model(args.model_dir)
    if args.agreement:
        agreement(model)
        return
    print(f"{USERS} users x {rounds} rounds, {REPLY_TOKENS} forced tokens per reply, {psutil.cpu_count()} CPUs",
          flush=True)
    runnable = []
    for mode in modes:
        if reason := skip_reason(mode):
            print(f"{mode}: skipped, {reason}", flush=True)
        else:
            runnable.append(mode)
    if args.stagger:  # arrivals spread over time: what joining a running batch is for
        for mode in [m for m in runnable if m in OURS] or ["ours-auto"]:
            run_ours(model, mode, USERS, rounds, args.stagger)
        return
    rows = []
    for mode in runnable:
        if mode in OURS:
            rows.append(run_ours(model, mode, USERS, rounds))
        elif mode in HF:
            rows.append(run_hf(model, mode, USERS, rounds))
        elif mode == "naive":
            rows.append(run_naive(model, USERS, rounds))
        elif mode == "ct2":
            rows.append(run_ct2(model, USERS, rounds))
    print_ratios(rows)
    singles = [run_ours(model, mode, 1, 3) for mode in runnable if mode in OURS]
    bandwidth = memory_bandwidth_gbs()
    parameters = 355e6  # ruDialoGPT-medium's weights, each read once per generated token at batch 1
    bounds = {"fp32": bandwidth * 1e9 / (4 * parameters), "bf16": bandwidth * 1e9 / (2 * parameters),
              "int8": bandwidth * 1e9 / parameters}
    for single in singles:
        print(f"batch 1, {single['engine']}: {single['tokens_per_s']:.1f} tok/s ({REPLY_TOKENS} tokens in "
              f"{single['p50_s']:.2f} s)", flush=True)
    print(f"copy bandwidth {bandwidth:.1f} GB/s bounds batch 1 at " +
          ", ".join(f"{bound:.0f} tok/s ({name} weights)" for name, bound in bounds.items()), flush=True)
    beams = {} if args.quick else beam_cost(model)
    agreements = {} if args.quick else agreement(model)
    if args.out:
        args.out.write_text(json.dumps({"cpu": probe().describe(), "auto_path": serving_path("auto", "auto").describe(),
                                        "rows": rows, "batch1": singles, "bandwidth_gbs": bandwidth,
                                        "bounds": bounds, "beams": beams,
                                        "agreement": agreements}, indent=2))


if __name__ == "__main__":
    from sobesednik.quiet import quiet_libraries

    quiet_libraries()  # the bench's own lines, not the loaders' progress bars, in its output and its children's
    if len(sys.argv) > 1 and sys.argv[1] == "--child-naive":
        import uvicorn

        uvicorn.run(naive_app(Path(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-hf":
        child_hf(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-ct2":
        child_ct2(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
