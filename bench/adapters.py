"""Benchmark of personas: 16 users spread over 1, 2 and 4 LoRA adapters of one base in one `serve` process,
against the same base with one adapter merged in (a plain MODEL_DIR), in one run.

The base is bench/serve.py's ruDialoGPT-medium-shaped GPT-2 with random weights; each adapter is what `train`
writes with its defaults (LoRA r=8 on c_attn/c_proj, GPT-2's Conv1D layout) with random non-zero weights, plus,
with `--token-rows`, trained rows of the two role tokens on the tied embedding (what a base that lacked them
gets). Every mode serves with `serve`'s defaults (`--dtype auto --quantize auto`: the path each gets is printed),
the same prompts, the model card's sampling and 40 forced tokens per reply; user i asks for adapter i mod k, so
every batch mixes all k adapters. Prints tokens/s, p50/p95 latency, peak RSS, and each mode's ratio to merged.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/adapters.py            # ~5 min on 2 cores
    .venv/bin/python bench/adapters.py --token-rows --rounds 1
    .venv/bin/python bench/adapters.py --steps        # one decoding step: mixed batch vs one batch per adapter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))  # the service launcher

from serve import CARD, REPLY_TOKENS, USERS, PeakRss, build_model, closed_loop, report  # noqa: E402

ADAPTERS = (1, 2, 4)


def build_adapters(base: Path, out: Path, count: int, token_rows: bool) -> list[Path]:
    """`count` random LoRA adapters of `base` in `train`'s layout (adapter dir + its tokenizer)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN
    from sobesednik.modeling.load import load_base

    dirs = []
    for index in range(count):
        path = out / f"adapter-{index}{'-rows' if token_rows else ''}"
        dirs.append(path)
        if (path / "adapter_config.json").is_file():
            continue
        model, tokenizer, _ = load_base(str(base))
        rows = tokenizer.convert_tokens_to_ids([USER_TOKEN, ASSISTANT_TOKEN])
        config = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["c_attn", "c_proj"],
                            fan_in_fan_out=True, trainable_token_indices={"wte": rows} if token_rows else None)
        model = get_peft_model(model, config)
        torch.manual_seed(index)
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                parameter.data.normal_(0, 0.02)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return dirs


def merged(base: Path, adapter: Path, out: Path) -> Path:
    """`base` with `adapter` merged in, saved as a plain MODEL_DIR (what `export` writes)."""
    if (out / "config.json").is_file():
        return out
    from peft import PeftModel

    from sobesednik.modeling.load import load_base
    from sobesednik.modeling.model_dir import save_model_dir

    model, tokenizer, _ = load_base(str(base))
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return save_model_dir(model, tokenizer, out)


def run(model: Path, name: str, args: tuple[str, ...], models: list[str] | None, rounds: int) -> dict:
    from service_process import run_service

    with run_service(model, args=(*args, "--max-batch-size", str(USERS), "--max-wait-ms", "20",
                                  "--request-timeout-s", "3600"), ready_timeout=600) as service:
        path = next((line.split("serving ", 1)[1] for line in service.log().splitlines()
                     if "): serving " in line), "?")
        rss = PeakRss(service.process.pid)
        body = {"max_tokens": REPLY_TOKENS, "min_tokens": REPLY_TOKENS, **CARD}
        wall, latencies, tokens = asyncio.run(closed_loop(f"{service.url}/v1/chat/completions", USERS, rounds,
                                                          body, models=models))
        row = report(name, wall, latencies, tokens, rss.stop())
        print(f"{'':12s} path: {path}", flush=True)
        return row | {"path": path}


def step_times(base: Path, adapters: list[Path], repeats: int = 5) -> None:
    """In-process, one 16-row decoding step (a 64-token cache) with the service's model: each batch mixing k
    adapters, against the same rows as k batches of one adapter each (what "one batch per adapter" costs)."""
    import time

    import torch

    from sobesednik.inference.adapters import load_personas
    from sobesednik.inference.kv_cache import reserved_cache
    from sobesednik.inference.optimize import optimize_model

    names = [f"p{i}" for i in range(len(adapters))]
    model, _ = load_personas(str(base), dict(zip(names, adapters, strict=True)))
    model = optimize_model(model, dtype="auto", quantize="auto")
    prompt = torch.randint(0, 1000, (USERS, 64))

    @torch.inference_mode()
    def step(rows: list[int], adapter_names: list[str]) -> float:
        cache = reserved_cache()
        model(input_ids=prompt[rows], cache=cache, use_cache=True, adapter_names=adapter_names, logits_to_keep=1)
        start = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=prompt[rows, :1], cache=cache, use_cache=True, adapter_names=adapter_names)
            cache.crop(-1)  # back to the 64-token prompt: every step costs the same
        return (time.perf_counter() - start) / repeats

    for count in ADAPTERS:
        owners = [names[i % count] for i in range(USERS)]
        mixed = step(list(range(USERS)), owners)
        split = sum(step([i for i in range(USERS) if owners[i] == name], [name] * (USERS // count))
                    for name in names[:count])
        print(f"{count} adapter(s), 16 rows: mixed batch {mixed * 1000:6.1f} ms/step, one batch per adapter "
              f"{split * 1000:6.1f} ms/step ({split / mixed:4.2f}x the mixed batch's time)", flush=True)


def main() -> None:
    from sobesednik.hardware import probe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="requests per user, one after another")
    parser.add_argument("--token-rows", action="store_true", help="adapters also carry trained role-token rows")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/sobesednik-bench/rudialogpt-medium-random"))
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--steps", action="store_true", help="only time one decoding step, mixed against one "
                        "batch per adapter, in-process")
    args = parser.parse_args()
    print(f"{probe().describe()}; {USERS} users x {args.rounds} rounds, {REPLY_TOKENS} forced tokens per reply",
          flush=True)
    base = build_model(args.model_dir)
    adapters = build_adapters(base, args.model_dir.parent, max(ADAPTERS), args.token_rows)
    if args.steps:
        step_times(base, adapters)
        return
    rows = [run(merged(base, adapters[0], args.model_dir.parent / "merged-0"), "merged", (), None, args.rounds)]
    for count in ADAPTERS:
        names = [f"p{i}" for i in range(count)]
        flags = tuple(part for name, path in zip(names, adapters, strict=False)
                      for part in ("--adapter", f"{name}={path}"))
        rows.append(run(base, f"{count} adapter{'s' if count > 1 else ''}", flags, names, args.rounds))
    baseline = rows[0]["tokens_per_s"]
    for row in rows[1:]:
        print(f"{row['engine']:12s} {row['tokens_per_s'] / baseline:5.2f}x merged's tokens/s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"cpu": probe().describe(), "token_rows": args.token_rows, "rows": rows},
                                       indent=2))


if __name__ == "__main__":
    main()
