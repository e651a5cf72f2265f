"""Sampled replies for reports and `evaluate` come from the service's `Generator`, the same for any batch."""

from __future__ import annotations

from pathlib import Path

from sobesednik.dialogue import read_jsonl
from sobesednik.inference.generator import Generator, Row
from sobesednik.modeling.load import load_model
from sobesednik.training.metrics import sample_replies


def test_sampled_replies_are_the_services_and_do_not_depend_on_the_batch(trained_run_dir: Path,
                                                                         prepared_data_dir: Path):
    model, tokenizer = load_model(str(trained_run_dir))
    generator = Generator(model, tokenizer)
    contexts = [dialogue[:-1] for dialogue in read_jsonl(prepared_data_dir / "valid.jsonl")[:4]]
    model.train()  # as in the middle of training: sampling switches dropout off and then restores the mode
    together = sample_replies(generator, contexts, seed=5, max_new_tokens=12, batch_size=4)
    assert model.training
    alone = [sample_replies(generator, [context], seed=5 + i, max_new_tokens=12)[0]
             for i, context in enumerate(contexts)]
    assert [completion.text for completion in together] == [completion.text for completion in alone]
    params = generator.defaults.with_overrides(max_new_tokens=12, seed=5)
    model.eval()
    [direct] = generator.generate([Row(generator.chat_prompt(contexts[0], 12), params)])
    assert together[0] == direct
    assert {completion.finish_reason for completion in together} <= {"stop", "length", "empty"}
