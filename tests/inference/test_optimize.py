"""Conv1D → nn.Linear, packed bf16 linears and the fused GELU keep the outputs; bf16 keeps greedy top-1
agreement with fp32; int8 measured; the AVX2 fallback (forced, so it runs on every machine); refusals."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from agreement import top1_agreement
from sobesednik.dialogue import render, render_reply
from sobesednik.errors import ConfigError
from sobesednik.hardware import probe, serving_path
from sobesednik.inference import dynamic_int8, int8_kernel
from sobesednik.inference.dynamic_int8 import DynamicInt8Linear
from sobesednik.inference.generator import Generator, Row
from sobesednik.inference.optimize import (
    INT8_MAX_ROWS,
    Int8StepsLinear,
    PackedLinear,
    TanhGelu,
    conv1d_to_linear,
    fuse_gelu,
    optimize_model,
)

needs_onednn_bf16 = pytest.mark.skipif(
    not probe().onednn_bf16,
    reason=f"needs oneDNN's bf16 linear (AVX-512 or AMX, torch with oneDNN); this CPU is {probe().cpu_class}")


def test_conv1d_to_linear_keeps_the_logits(generator: Generator, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    converted = copy.deepcopy(original)
    assert conv1d_to_linear(converted) == 4 * original.config.n_layer  # c_attn, c_proj, c_fc, mlp.c_proj
    with torch.inference_mode():
        torch.testing.assert_close(converted(input_ids=_prompt_ids(generator)).logits,
                                   original(input_ids=_prompt_ids(generator)).logits)


def _prompt_ids(generator: Generator) -> torch.Tensor:
    return torch.tensor([generator.chat_prompt([{"role": "user", "content": "привет всем, как дела?"}], 10)])


def test_fused_gelu_keeps_the_logits(generator: Generator, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    fused = copy.deepcopy(original)
    assert fuse_gelu(fused) == original.config.n_layer
    assert not any(type(module).__name__ == "NewGELUActivation" for module in fused.modules())
    with torch.inference_mode():
        torch.testing.assert_close(fused(input_ids=_prompt_ids(generator)).logits,
                                   original(input_ids=_prompt_ids(generator)).logits)


@pytest.mark.parametrize(("shape", "dtype"), [((1, 1, 4096), torch.float32), ((16, 1, 4096), torch.float32),
                                             ((2, 9, 4096), torch.float32), ((16, 1, 4096), torch.bfloat16)])
def test_tanh_gelu_is_gpt2s_gelu_on_both_kernels(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    from transformers.activations import NewGELUActivation

    hidden = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    expected = NewGELUActivation()(hidden.float())
    torch.testing.assert_close(TanhGelu()(hidden).float(), expected, **({} if dtype == torch.float32 else
                                                                       {"atol": 0.02, "rtol": 0.01}))


def test_tanh_gelu_keeps_gpt2s_gelu_at_the_extremes() -> None:
    from transformers.activations import NewGELUActivation

    extremes = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 10.0, -10.0, 50.0, -50.0, 1e20, -1e20, 3e38, -3e38,
                             float("inf"), float("-inf"), float("nan")])
    hidden = extremes.repeat(4 * 4096 // len(extremes) + 1)[: 4 * 4096]  # enough rows for the float32 composite
    torch.testing.assert_close(TanhGelu()(hidden), NewGELUActivation()(hidden), equal_nan=True)


@needs_onednn_bf16
@pytest.mark.parametrize("shape", [(5, 48), (2, 7, 48), (1, 1, 48)])
def test_packed_linear_computes_what_the_linear_does(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80).to(torch.bfloat16)
    hidden = torch.randn(shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(PackedLinear(linear)(hidden), linear(hidden))


@needs_onednn_bf16
def test_bf16_on_cpu_packs_every_linear_and_keeps_the_logits(generator: Generator, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    plain = _plain_bf16(tiny_model_dir)
    packed = optimize_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), dtype="bfloat16", quantize="none")
    assert sum(isinstance(module, PackedLinear) for module in packed.modules()) == 4 * plain.config.n_layer + 1
    assert not any(type(module) is torch.nn.Linear for module in packed.modules())  # lm_head included
    with torch.inference_mode():
        torch.testing.assert_close(packed(input_ids=_prompt_ids(generator)).logits,
                                   plain(input_ids=_prompt_ids(generator)).logits, atol=0.05, rtol=0.02)


def _plain_bf16(tiny_model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    conv1d_to_linear(plain)
    return plain.to(torch.bfloat16)


def test_bf16_on_avx2_runs_plain_linears_and_generates(force_float32_class: Callable[[], None],
                                                       generator: Generator, tiny_model_dir: Path) -> None:
    """Where oneDNN has no bf16 linear, an explicit bf16 runs unpacked instead of failing to load."""
    force_float32_class()
    bf16 = Generator.load(tiny_model_dir, dtype="bfloat16", quantize="none")
    assert not any(isinstance(module, PackedLinear) for module in bf16.model.modules())
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    with torch.inference_mode():
        torch.testing.assert_close(bf16.model(input_ids=_prompt_ids(generator)).logits,
                                   _plain_bf16(tiny_model_dir)(input_ids=_prompt_ids(generator)).logits,
                                   atol=0.05, rtol=0.02)  # the fused GELU rounds differently in bf16
    params = bf16.defaults.with_overrides(max_new_tokens=5, min_new_tokens=5, temperature=0.0)
    [completion] = bf16.generate([Row(_prompt_ids(generator)[0].tolist(), params)])
    assert completion.completion_tokens == 5


def test_auto_on_avx2_quantizes_a_model_dir_to_int8(force_float32_class: Callable[[], None],
                                                    tiny_model_dir: Path) -> None:
    force_float32_class()
    model = Generator.load(tiny_model_dir, dtype="auto", quantize="auto").model
    assert len(_quantized_linears(model)) == 4 * model.config.n_layer + 1  # every projection and lm_head
    on_ours = dynamic_int8.load() is not None
    assert all(isinstance(module, DynamicInt8Linear) == on_ours for module in _quantized_linears(model))


def _quantized_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Dynamic int8 linears: ours where the kernel builds, else torch's."""
    return [module for module in model.modules() if isinstance(module, DynamicInt8Linear)
            or (type(module).__name__ == "Linear" and type(module).__module__.startswith("torch.ao.nn.quantized"))]


def test_a_run_dir_is_merged_and_takes_the_plain_path(force_float32_class: Callable[[], None],
                                                      trained_run_dir: Path) -> None:
    """A RUN_DIR served alone is merged as it loads (what `export` writes), so int8 applies as to a MODEL_DIR."""
    force_float32_class()
    model = Generator.load(trained_run_dir, dtype="auto", quantize="auto").model
    assert not any("lora" in name for name, _ in model.named_modules())
    assert len(_quantized_linears(model)) == 4 * model.config.n_layer + 1


def _persona_logits(model: torch.nn.Module, ids: torch.Tensor, names: list[str]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids, adapter_names=names).logits.float()


@pytest.fixture(scope="module")
def persona_inputs(trained_run_dir: Path, speaker_run_dir: Path, tiny_base_dir: Path) -> tuple:
    """Two adapters of one base in float32 (the reference), their paths, rows naming each, and their logits."""
    from sobesednik.inference.adapters import BASE, load_personas

    runs = {"all": trained_run_dir, "speaker": speaker_run_dir}
    reference, tokenizer = load_personas(str(tiny_base_dir), runs)
    prompt = tokenizer.encode("@@ПЕРВЫЙ@@ привет, как дела? что делаешь вечером @@ВТОРОЙ@@", add_special_tokens=False)
    ids = torch.tensor([prompt] * 3)
    names = ["all", "speaker", BASE]
    return runs, ids, names, _persona_logits(reference, ids, names)


def _lora_layers_stay_float(model: torch.nn.Module, dtype: torch.dtype) -> None:
    loras = [module for name, module in model.named_modules() if ".lora_A." in name or ".lora_B." in name]
    assert loras and all(type(module) is torch.nn.Linear and module.weight.dtype == dtype for module in loras)


def test_personas_on_avx2_quantize_the_base_and_keep_lora_float(force_float32_class: Callable[[], None],
                                                                tiny_base_dir: Path, persona_inputs: tuple) -> None:
    runs, ids, names, expected = persona_inputs
    force_float32_class()
    model = Generator.load_personas(str(tiny_base_dir), runs, dtype="auto", quantize="auto").model
    n_layer = model.config.n_layer
    assert len(_quantized_linears(model)) == 4 * n_layer + 1  # every frozen projection and lm_head
    _lora_layers_stay_float(model, torch.float32)
    got = _persona_logits(model, ids, names)
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.8  # the int8 bar of this module
    assert not torch.allclose(got[0], got[1])  # each row still has its own adapter


@needs_onednn_bf16
def test_personas_in_bf16_pack_the_base_and_keep_the_logits(tiny_base_dir: Path, persona_inputs: tuple) -> None:
    runs, ids, names, expected = persona_inputs
    model = Generator.load_personas(str(tiny_base_dir), runs, dtype="bfloat16", quantize="none").model
    assert sum(isinstance(module, PackedLinear) for module in model.modules()) == 4 * model.config.n_layer + 1
    _lora_layers_stay_float(model, torch.bfloat16)
    torch.testing.assert_close(_persona_logits(model, ids, names), expected, atol=0.1, rtol=0.05)


@pytest.fixture(scope="module")
def agreement_inputs(exported_model_dir: Path, prepared_data_dir: Path) -> tuple[Generator, list, list]:
    """The test split's dialogues as token sequences (context, then the real reply) and their context lengths."""
    reference = Generator.load(exported_model_dir)
    lines = (prepared_data_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()[:24]
    sequences, prompt_lengths = [], []
    for line in lines:
        messages = json.loads(line)["messages"]
        prompt = reference.tokenizer.encode(render(messages[:-1], add_generation_prompt=True))[-150:]
        reply = reference.tokenizer.encode(render_reply(messages[-1]["content"]))[:40]
        sequences.append(prompt + reply)
        prompt_lengths.append(len(prompt))
    return reference, sequences, prompt_lengths


@pytest.mark.parametrize(("dtype", "quantize", "at_least"),
                         [("bfloat16", "none", 0.95), ("bfloat16", "auto", 0.95), ("float32", "int8", 0.8),
                          ("auto", "auto", 0.95)])  # what `serve` runs here by default: the quality bar
def test_reduced_precision_keeps_greedy_top1(agreement_inputs: tuple, exported_model_dir: Path, dtype: str,
                                            quantize: str, at_least: float) -> None:
    reference, sequences, prompt_lengths = agreement_inputs
    candidate = Generator.load(exported_model_dir, dtype=dtype, quantize=quantize).model
    agreement = top1_agreement(reference.model, candidate, sequences, prompt_lengths, stepwise=True)
    print(f"greedy top-1 agreement of {dtype}/{quantize} with float32, decoding step by step: {agreement:.3f}")
    assert agreement >= at_least


@needs_onednn_bf16
@pytest.mark.parametrize("kernel", ["ours", "torch's"])
def test_int8_steps_serve_small_calls_and_bf16_the_prompt_passes(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel == "torch's":  # no C compiler, or a CPU without a variant of ours
        monkeypatch.setattr(int8_kernel, "load", lambda: None)
    linear = torch.nn.Linear(64, 48).to(torch.bfloat16)
    packed = PackedLinear(linear)
    both = Int8StepsLinear(packed, linear)
    assert both.int8.on_kernel == (kernel == "ours" and int8_kernel.load() is not None)
    dequantized = both.int8.weight.float() * both.int8.scale.float()[:, None]
    for shape in ((1, 64), (1, INT8_MAX_ROWS, 64)):  # a decoding step of 1 and of INT8_MAX_ROWS users
        hidden = torch.randn(shape, dtype=torch.bfloat16)
        got = both(hidden)
        assert got.shape == packed(hidden).shape
        torch.testing.assert_close(got.float(), torch.nn.functional.linear(hidden.float(), dequantized,
                                                                           linear.bias.float()), rtol=0.02, atol=0.02)
        torch.testing.assert_close(got.float(), packed(hidden).float(), rtol=0.05, atol=0.05)  # int8 ≈ bf16
    prompt = torch.randn(1, INT8_MAX_ROWS + 1, 64, dtype=torch.bfloat16)
    assert torch.equal(both(prompt), packed(prompt))


@pytest.mark.skipif(not serving_path("auto", "auto").pack_bf16,
                    reason=f"auto packs bf16 only with native bf16 and oneDNN's bf16 linear; this CPU is "
                           f"{probe().cpu_class}")
def test_auto_where_bf16_is_packed_gives_every_linear_an_int8_copy(tiny_model_dir: Path) -> None:
    model = Generator.load(tiny_model_dir, dtype="auto", quantize="auto").model
    linears = [m for m in model.modules() if isinstance(m, PackedLinear)]
    steps = [m for m in model.modules() if isinstance(m, Int8StepsLinear)]
    assert linears and [m.large for m in steps] == linears
    explicit = Generator.load(tiny_model_dir, dtype="bfloat16", quantize="none").model
    assert not any(isinstance(m, Int8StepsLinear) for m in explicit.modules())


def test_unknown_dtype_is_refused(generator: Generator) -> None:
    with pytest.raises(ConfigError, match="dtype 'int4' is not supported: use one of auto, float32"):
        optimize_model(generator.model, dtype="int4")
