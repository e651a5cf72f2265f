"""Benchmark sobesednik's LoRA training setup against the naive one on the ruDialoGPT-medium architecture.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/train.py                  # ~9 min on 2 busy cores
    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/train.py --steps 6 --modes naive,ours

The model is a GPT-2 with ruDialoGPT-medium's shape (n_embd 1024, 24 layers, 16 heads, vocab 50259), randomly
initialised: speed does not depend on the weights. Samples are synthetic dialogues with realistic lengths
(log-normal, mean ~60 tokens, max 256), the reply (the last ~30%) labelled as in `ConversationDataset`.

Every mode trains on exactly the same 4 samples per optimizer step, so after the same steps every mode has
seen the same real tokens and, if the speed-up changes nothing that is learned, reaches the same loss:
- naive: fp32, each sample padded to 256 (4 × 256 tokens per step);
- dynamic: fp32, padded to the longest of the 4;
- pack-fp32: the 4 samples packed into one row (block-diagonal attention), fp32;
- pack-bf16: packed, bf16 autocast, fp32 base weights (skipped, with a line saying so, on a CPU without native
  bf16, where it only emulates bf16);
- ours: packed, at the precision `train --precision auto` picks here (`hardware.training_precision`): bf16
  autocast with frozen base weights stored in bf16 (LoRA weights stay fp32) where the CPU multiplies bf16
  natively, else fp32;
- ours-ckpt: ours + gradient checkpointing; ours-attn / ours-mlp: LoRA on c_attn only / on c_attn+c_proj+c_fc.
Each mode runs in its own subprocess; peak RSS is that process's `ru_maxrss`. Speed is real (non-pad) tokens
per second of the median step after the first (the first warms up oneDNN kernels; the median resists the
other jobs on a shared machine). The loop is a plain
AdamW loop around the library's pieces (`PadCollator`, `pack_samples`, `wrap_with_lora`), not `Trainer`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import time

VOCAB = 50259
MAX_LENGTH = 256
BATCH = 4  # samples per optimizer step, in every mode
MODES = {
    "naive": {"pad_to": MAX_LENGTH, "pack": False, "autocast": False, "bf16_weights": False},
    "dynamic": {"pad_to": 8, "pack": False, "autocast": False, "bf16_weights": False},
    "pack-fp32": {"pad_to": 8, "pack": True, "autocast": False, "bf16_weights": False},
    "pack-bf16": {"pad_to": 8, "pack": True, "autocast": True, "bf16_weights": False},
    "ours": {"pad_to": 8, "pack": True, "autocast": "auto", "bf16_weights": "auto"},
    "ours-ckpt": {"pad_to": 8, "pack": True, "autocast": "auto", "bf16_weights": "auto", "checkpointing": True},
    "ours-attn": {"pad_to": 8, "pack": True, "autocast": "auto", "bf16_weights": "auto", "targets": ["c_attn"]},
    "ours-mlp": {"pad_to": 8, "pack": True, "autocast": "auto", "bf16_weights": "auto",
                 "targets": ["c_attn", "c_proj", "c_fc"]},
}


def synthetic_samples(count: int, seed: int) -> list:
    """Dialogue-like samples: Zipf-ish token ids, log-normal lengths (mean ~60, max 256), reply labelled."""
    from sobesednik.training.dataset import IGNORE_INDEX, Sample

    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        length = max(8, min(MAX_LENGTH, int(rng.lognormvariate(math.log(48), 0.65))))
        ids = [min(VOCAB - 1, int(rng.paretovariate(1.1))) + rng.randrange(50) for _ in range(length)]
        reply = max(2, int(length * 0.3))
        samples.append(Sample(ids, [IGNORE_INDEX] * (length - reply) + ids[-reply:]))
    return samples


def run_mode(mode: str, steps: int, seed: int) -> dict:
    """Train `steps` steps in this process and return the figures."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from sobesednik.hardware import training_precision
    from sobesednik.training.collate import PadCollator, pack_samples
    from sobesednik.training.lora import wrap_with_lora
    from sobesednik.training.settings import TrainSettings

    bf16 = training_precision("auto") == "bf16"  # what `train` itself would pick on this machine
    spec = {key: bf16 if value == "auto" else value for key, value in MODES[mode].items()}
    torch.manual_seed(seed)
    # no dropout: every mode then computes the same function, so the losses show what the setup changes
    config = GPT2Config(n_embd=1024, n_layer=24, n_head=16, vocab_size=VOCAB, n_positions=1024, use_cache=False,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.set_default_dtype(torch.bfloat16 if spec["bf16_weights"] else torch.float32)
    model = GPT2LMHeadModel(config)
    torch.set_default_dtype(torch.float32)
    settings = TrainSettings(gradient_checkpointing=spec.get("checkpointing", False), lora_dropout=0.0,
                             lora_target_modules=spec.get("targets", TrainSettings().lora_target_modules))
    model = wrap_with_lora(model, settings, [])
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4)
    collate = PadCollator(pad_token_id=0, pad_to_multiple_of=spec["pad_to"])
    samples = synthetic_samples(BATCH * steps, seed)
    model.train()
    losses, rates = [], []
    for step in range(steps):
        group = samples[step * BATCH:(step + 1) * BATCH]
        rows = pack_samples(group, BATCH * MAX_LENGTH, seed) if spec["pack"] else [
            {"input_ids": s.input_ids, "labels": s.labels} for s in group]
        batch = collate(rows)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["autocast"]):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step warms up kernels
            rates.append(sum(len(s) for s in group) / (time.perf_counter() - start))
        losses.append(round(loss.item(), 4))
    return {"mode": mode, "precision": "bf16" if spec["autocast"] else "fp32", "steps": steps,
            "real_tokens_per_s": statistics.median(rates),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "final_loss": losses[-1], "losses": losses, "trainable": sum(p.numel() for p in trainable)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per mode (4 samples each)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_mode(args.child, args.steps, args.seed)))
        return
    from sobesednik.hardware import probe, training_precision

    capabilities = probe()
    print(f"{capabilities.describe()}: ours trains in {training_precision('auto')}", flush=True)
    results = []
    for mode in args.modes.split(","):
        if MODES[mode]["autocast"] is True and not capabilities.native_bf16:
            print(f"{mode}: skipped, this CPU has no native bf16 (class {capabilities.cpu_class}): "
                  "autocast would only emulate it", flush=True)
            continue
        command = [sys.executable, __file__, "--child", mode, "--steps", str(args.steps), "--seed", str(args.seed)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    naive = next((r for r in results if r["mode"] == "naive"), results[0])
    print(f"\n{'mode':10} {'precision':>9} {'real tok/s':>10} {'× naive':>8} {'peak RSS GB':>11} {'× naive':>8} "
          f"{'final loss':>10}")
    for r in results:
        speedup = r["real_tokens_per_s"] / naive["real_tokens_per_s"]
        memory = r["peak_rss_gb"] / naive["peak_rss_gb"]
        print(f"{r['mode']:10} {r['precision']:>9} {r['real_tokens_per_s']:10.1f} {speedup:8.2f} "
              f"{r['peak_rss_gb']:11.2f} {memory:8.2f}"
              f" {r['final_loss']:10.4f}")


if __name__ == "__main__":
    main()
