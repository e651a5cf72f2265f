"""Which modules LoRA should adapt on a Llama-layout base: attention only, or every linear layer of a block.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/lora_targets.py              # a few minutes
    .venv/bin/python bench/lora_targets.py --steps 60 --pretrain-steps 150

Both runs start from the same tiny Llama (`tiny-model --arch llama`, pretrained on the shipped sample chat in
its native Llama 3 template) and train with `train --format native` for the same steps, seed and rate; the
figure is the best valid reply loss (lower is better) and the trainable parameters. Prints the ratios against
the attention-only run. Not a timing benchmark: the loss does not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat_export" / "result.json"
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = [*ATTENTION, "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    from sobesednik.modeling.pretrain import build_tiny_base

    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings
    from sobesednik.hardware import probe
    from sobesednik.training.settings import TinyModelSettings, TrainSettings
    from sobesednik.training.train import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pretrain-steps", type=int, default=150)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lora-targets-"))
    data = prepare(PrepareSettings(exports=[SAMPLE], out=work / "data", progress=False, _env_file=None)).out
    base = build_tiny_base(TinyModelSettings(data=data, out=work / "base", arch="llama",
                                             pretrain_steps=args.pretrain_steps, _env_file=None)).model_dir
    results = {}
    for name, modules in (("attention", ATTENTION), ("all-linear", ALL_LINEAR)):
        settings = TrainSettings(data=data, base=str(base), out=work / name, format="native", max_steps=args.steps,
                                 eval_steps=args.steps // 4, patience=0, samples=0, fidelity_samples=0,
                                 lora_target_modules=modules, _env_file=None)
        result = train(settings)
        config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
        from safetensors import safe_open

        with safe_open(result.adapter_dir / "adapter_model.safetensors", "pt") as tensors:
            parameters = sum(tensors.get_tensor(key).numel() for key in tensors.keys())  # noqa: SIM118
        results[name] = {"best_valid_loss": result.best_valid_loss, "adapter_parameters": parameters,
                         "modules": config["target_modules"]}
    baseline = results["attention"]
    print(f"machine: {probe().describe()}")
    print(f"{'targets':<12} {'best valid loss':>16} {'ratio':>7} {'adapter params':>15} {'ratio':>7}")
    for name, figures in results.items():
        loss, parameters = figures["best_valid_loss"], figures["adapter_parameters"]
        print(f"{name:<12} {loss:>16.4f} {loss / baseline['best_valid_loss']:>7.3f} "
              f"{parameters:>15} {parameters / baseline['adapter_parameters']:>7.2f}")


if __name__ == "__main__":
    main()
