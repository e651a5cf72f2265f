"""The Generator: OpenAI-style messages in, cleaned replies out, many requests decoded as one batch.

It loads an exported MODEL_DIR or a RUN_DIR (base + LoRA adapter, merged as it loads), builds the prompt in the
format its tokenizer carries (`modeling/formats.py`: the dialogue format or the base's native chat template; oldest
turns dropped to fit the context window and the requested reply length), and decodes a batch of rows with its own
loop over the KV cache (`kv_cache.py`): the prompts in one pass as one row of tokens (`packing.py`), GPT-2's
decoding steps as bare tensor ops (`gpt2_decode.py`), one sampling setting per row, and a row that has finished (the
closing `@@ПЕРВЫЙ@@` or end-of-turn token, EOS, a stop string, its token limit, its client gone) leaves the batch at
once so it stops costing compute. Between two tokens, rows of new requests may join the running batch (continuous
batching: `admit`), so a request never waits for a whole batch to finish. A reply that comes out empty is resampled
(it re-joins as a new row) a bounded number of times, then returned with `finish_reason="empty"`.

    generator = Generator.load("models/my-chat", dtype="bfloat16")
    [completion] = generator.generate([Row(generator.chat_prompt(messages, 40), generator.defaults)])
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sobesednik.dialogue import ROLE_TOKENS, Message
from sobesednik.errors import SobesednikError
from sobesednik.hardware import probe, serving_path
from sobesednik.inference.gpt2_decode import GPT2Decoder
from sobesednik.inference.heap import release_free_memory
from sobesednik.inference.kv_cache import reserved_cache, stack_caches
from sobesednik.inference.optimize import optimize_model
from sobesednik.inference.packing import use_packed_attention
from sobesednik.inference.sampling import SamplingParams, apply_repetition_penalty, ban_repeated_ngrams, sample_next
from sobesednik.modeling.formats import chat_format

logger = logging.getLogger(__name__)

MAX_RESAMPLES = 2  # extra tries for an empty sampled reply; greedy decoding would only repeat itself


class RequestError(SobesednikError):
    """A request the model cannot serve as given (e.g. a reply longer than the context window)."""


@dataclass
class Row:
    """One row of a batch: the prompt's token ids and how to sample its reply (a request with n=3 is 3 rows)."""

    prompt: list[int]
    params: SamplingParams
    adapter: str | None = None  # the persona (adapter name) of a multi-adapter Generator; None: the base
    on_text: Callable[[str], None] | None = None  # receives each new piece of the cleaned reply (streaming)
    on_done: Callable[[Generated], None] | None = None  # receives the completion as soon as the row is finished
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client went away


@dataclass(frozen=True)
class Generated:
    """What one row produced: the cleaned reply, why it ended and its token counts."""

    text: str
    finish_reason: str  # "stop", "length", "empty" (still empty after resampling) or "cancelled"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class _Decoding:
    request: Row
    rng: torch.Generator
    tokens: list[int] = field(default_factory=list)
    sent: str = ""  # cleaned text already passed to on_text
    finish_reason: str = ""
    attempts: int = 0


@dataclass
class _Batch:
    """The rows being decoded together and their state; `logits` predict each row's next token."""

    rows: list[_Decoding]
    cache: Any
    mask: torch.Tensor  # [rows, width]: 1 over each row's tokens, 0 over its left padding
    last_position: torch.Tensor  # [rows]: position id of each row's last token
    seen: torch.Tensor  # [rows, width]: prompt and reply so far, left-padded with the row's first token
    logits: torch.Tensor  # [rows, vocab], float32


def clean_reply(text: str, stop: Sequence[str] = (), markers: Sequence[str] = tuple(ROLE_TOKENS.values())) -> str:
    """Cut the reply at the first marker (role or turn token) or stop string; no leading or trailing whitespace.

    A byte-level model can write bytes that are not UTF-8 (half a letter); they decode to U+FFFD, which is
    dropped rather than shown as "�".
    """
    for marker in (*markers, *stop):
        if marker:
            text = text.split(marker, 1)[0]
    return text.replace("\ufffd", "").strip()


class Generator:
    """A loaded model and tokenizer that turn batches of prompts into replies; not thread-safe (one batch at a time)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_resamples: int = MAX_RESAMPLES,
                 adapters: Sequence[str] = ()) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_resamples = max_resamples
        self.adapters = tuple(adapters)  # names of the adapters loaded beside the base (`adapters.py`)
        self.defaults = SamplingParams.from_generation_config(model.generation_config)
        config = model.config
        self.max_context = int(getattr(config, "n_positions", None) or config.max_position_embeddings)
        self.device = next(model.parameters()).device
        # The model dir's own format (its tokenizer's chat template) builds prompts and says what ends a reply.
        self.chat = chat_format(tokenizer)
        self.markers = self.chat.markers
        vocab = tokenizer.get_vocab()
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in [*eos_ids, tokenizer.eos_token_id, *(vocab.get(t) for t in self.markers)]
                         if i is not None}
        # Prompts of a batch as one row of tokens, no padding computed (`packing.py`), where the model allows.
        self.packs_prompts = use_packed_attention(model)
        self.decoder = GPT2Decoder.of(model)  # decoding steps without the module stack, for plain GPT-2

    @classmethod
    def load(cls, path: str | Path, *, dtype: str = "float32", quantize: str = "none",
             max_resamples: int = MAX_RESAMPLES) -> Generator:
        """Load a MODEL_DIR or RUN_DIR and make it fast for `dtype` / `quantize` (see `optimize.py`).

        A RUN_DIR's adapter is merged into its base as it loads, as `export` does: unmerged LoRA layers cost a
        quarter more per step (docs/benchmarks.md, "personas") and the merged model takes every fast path.
        """
        from sobesednik.modeling.load import load_model

        return cls._loaded(lambda: load_model(str(path), merge=True), dtype, quantize, max_resamples=max_resamples)

    @classmethod
    def load_personas(cls, base: str, adapters: Mapping[str, Path], *, dtype: str = "float32",
                      quantize: str = "none", max_resamples: int = MAX_RESAMPLES) -> Generator:
        """Load the base once and every adapter beside it; a request's `adapter` picks its persona."""
        from sobesednik.inference.adapters import load_personas

        return cls._loaded(lambda: load_personas(base, adapters), dtype, quantize, max_resamples=max_resamples,
                            adapters=list(adapters))

    @classmethod
    def _loaded(cls, load: Callable[[], tuple[Any, Any]], dtype: str, quantize: str, **options: Any) -> Generator:
        """`_checked`, then what loading and optimising left behind handed back to the OS (`heap.py`)."""
        generator = cls._checked(load, dtype, quantize, **options)
        release_free_memory(collect=True)
        return generator

    @classmethod
    def _checked(cls, load: Callable[[], tuple[Any, Any]], dtype: str, quantize: str, **options: Any) -> Generator:
        """`load()`'s model on the path for `dtype` / `quantize`, checked by `warm_up`.

        Where `auto` chose a path whose kernels fail on this CPU (a class nobody measured: torch's checks and
        kernels differ by CPU, and an ARM64 machine was never at hand), the model loads again on plain float32,
        with one warning line, rather than a service that never gets ready. A path asked for by name fails as
        asked, and so does the plain path itself.
        """
        model, tokenizer = load()
        try:
            generator = cls(optimize_model(model, dtype=dtype, quantize=quantize), tokenizer, **options)
            generator.warm_up()
            return generator
        except RuntimeError as error:  # torch's way of saying a kernel cannot run here
            path = serving_path(dtype, quantize, device=next(model.parameters()).device.type)
            plain = (path.dtype, path.quantize) == ("float32", "none")
            if dtype != "auto" or quantize not in ("auto", "none") or plain:
                raise
            logger.warning("%s: serving %s failed here (%s); serving float32 instead", probe().describe(),
                           path.describe(), error)
        model = generator = None  # the failed copy (changed in place) goes before a fresh one loads: peak memory
        model, tokenizer = load()
        return cls(optimize_model(model, dtype="float32", quantize="none"), tokenizer, **options)

    def warm_up(self) -> None:
        """Decode two greedy tokens (a prompt pass and a decoding step) for the base and every persona in one
        mixed batch, as every later batch runs; a kernel that cannot run here raises now, not on a request."""
        greedy = self.defaults.with_overrides(max_new_tokens=2, temperature=0.0)
        prompt = self.text_prompt("привет", 2)  # the kernels are what it checks, not the chat format
        self.generate([Row(prompt, greedy, adapter=adapter) for adapter in (None, *self.adapters)])

    # ---- prompts -------------------------------------------------------------------------------------------

    def _budget(self, max_new_tokens: int) -> int:
        budget = self.max_context - max_new_tokens
        if budget < 8:  # room for at least a short turn and the generation prompt
            raise RequestError(f"max_tokens={max_new_tokens} leaves no room for the prompt in this model's "
                               f"{self.max_context}-token context: ask for at most {self.max_context - 8}")
        return budget

    def chat_prompt(self, messages: Sequence[Message], max_new_tokens: int) -> list[int]:
        """Token ids of the dialogue-format prompt, the oldest turns dropped until it fits."""
        budget = self._budget(max_new_tokens)
        start = 0
        while True:
            ids = self.tokenizer.encode(self.chat.prompt(messages[start:]), add_special_tokens=False)
            if len(ids) <= budget or start == len(messages) - 1:
                break
            # Skip ahead by an estimate of how many turns are over budget, then re-check exactly.
            over = len(ids) - budget
            per_turn = max(1, len(ids) // (len(messages) - start))
            start = min(len(messages) - 1, start + max(1, over // per_turn))
        # One turn alone too long: keep its end, which holds the generation prompt.
        return ids[-budget:]

    def text_prompt(self, text: str, max_new_tokens: int) -> list[int]:
        """Token ids of a raw prompt, its beginning cut off if it does not fit."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise RequestError("the prompt is empty: send at least one character")
        return ids[-self._budget(max_new_tokens):]

    # ---- generation ----------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[Row],
                 admit: Callable[[int], Sequence[Row]] | None = None) -> list[Generated]:
        """Generate `requests` as one batch and return their completions.

        Before each token, `admit(rows_decoding)` may hand over more requests; they join the batch, and like
        every request they report through `on_done` when finished. A sampled reply that comes out empty is
        retried up to `max_resamples` times.
        """
        rows = [_Decoding(request, _rng(request.params.seed)) for request in requests]
        joining, batch = list(rows), None
        while True:
            if admit is not None:
                decoding = len(joining) + (len(batch.rows) if batch else 0)
                joining += [_Decoding(request, _rng(request.params.seed)) for request in admit(decoding)]
            if joining:
                batch = self._join(batch, self._prefill(joining))
                joining = []
            if batch is None or not batch.rows:
                break
            for row in self._advance(batch):
                if self._should_resample(row):
                    row.attempts += 1
                    row.tokens, row.finish_reason = [], ""
                    joining.append(row)
                elif row.request.on_done is not None:
                    row.request.on_done(self._completion(row))
        release_free_memory()  # the batch's cache and activations
        return [self._completion(row) for row in rows]

    def _should_resample(self, row: _Decoding) -> bool:
        """An empty sampled reply gets another try; greedy decoding would only repeat itself."""
        return (row.finish_reason in ("stop", "length") and not self._text(row) and not row.request.params.greedy
                and row.attempts < self.max_resamples)

    def _completion(self, row: _Decoding) -> Generated:
        text = self._text(row)
        reason = "empty" if not text and row.finish_reason in ("stop", "length") else row.finish_reason
        return Generated(text, reason, len(row.request.prompt), len(row.tokens))

    def _text(self, row: _Decoding) -> str:
        decoded = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        return clean_reply(decoded, row.request.params.stop, self.markers)

    @torch.inference_mode()
    def _prefill(self, rows: list[_Decoding]) -> _Batch:
        """The cache and first-token logits of `rows`' prompts: packed where the model allows (`packing.py`), one
        pass per persona (peft picks an adapter per row of a batch, and packed prompts are one row); else one
        pass over the prompts left-padded to the longest."""
        if not self.packs_prompts:
            return self._prompt_pass(rows, packed=False)
        batch = None
        for _, group in itertools.groupby(sorted(rows, key=_persona), key=_persona):
            batch = self._join(batch, self._prompt_pass(list(group), packed=True))
        return batch  # type: ignore[return-value]

    def _prompt_pass(self, rows: list[_Decoding], *, packed: bool) -> _Batch:
        """One forward pass over the prompts of `rows`, packed into one row or left-padded."""
        width = max(len(row.request.prompt) for row in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's last prompt token sits in the last column
            input_ids[i, width - len(row.request.prompt):] = torch.tensor(row.request.prompt)
            mask[i, width - len(row.request.prompt):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Padding of the repetition penalty's token list: a token the row has anyway, so it changes nothing.
        seen = torch.where(mask.bool(), input_ids, input_ids[torch.arange(len(rows)), width - mask.sum(-1)][:, None])
        if packed:
            lengths = [len(row.request.prompt) for row in rows]
            tokens = mask.bool()
            output = self.model(input_ids=input_ids[tokens][None].to(self.device),
                                attention_mask=torch.ones((1, sum(lengths)), dtype=torch.long, device=self.device),
                                position_ids=positions[tokens][None].to(self.device),
                                cache=reserved_cache(lengths), use_cache=True, packed_lengths=lengths,
                                logits_to_keep=(torch.tensor(lengths).cumsum(0) - 1).to(self.device),
                                **self._adapter_names(rows[:1]))
            logits = output.logits[0]
        else:
            output = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=positions.to(self.device), cache=reserved_cache(), use_cache=True,
                                logits_to_keep=1, **self._adapter_names(rows))
            logits = output.logits[:, -1, :]
        return _Batch(rows=list(rows), cache=output.cache, mask=mask.to(self.device),
                      last_position=positions[:, -1].to(self.device), seen=seen.to(self.device),
                      logits=logits.float())

    def _adapter_names(self, rows: list[_Decoding]) -> dict[str, list[str]]:
        """peft's per-row adapter argument for a multi-adapter model; nothing for a single model."""
        if not self.adapters:
            return {}
        from sobesednik.inference.adapters import BASE

        return {"adapter_names": [row.request.adapter or BASE for row in rows]}

    @staticmethod
    def _join(running: _Batch | None, joining: _Batch) -> _Batch:
        """The rows of `joining` appended to the running batch; the shorter side's cache and mask left-padded."""
        if running is None or not running.rows:
            return joining
        width = max(running.mask.shape[1], joining.mask.shape[1])

        def padded(mask: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(mask, (width - mask.shape[1], 0))

        def padded_seen(seen: torch.Tensor) -> torch.Tensor:  # repeats each row's first token, like _prefill
            return torch.cat([seen[:, :1].expand(-1, width - seen.shape[1]), seen], dim=1)

        return _Batch(rows=running.rows + joining.rows, cache=stack_caches(running.cache, joining.cache),
                      mask=torch.cat([padded(running.mask), padded(joining.mask)]),
                      last_position=torch.cat([running.last_position, joining.last_position]),
                      seen=torch.cat([padded_seen(running.seen), padded_seen(joining.seen)]),
                      logits=torch.cat([running.logits, joining.logits]))

    @torch.inference_mode()
    def _advance(self, batch: _Batch) -> list[_Decoding]:
        """Sample one token for every row; finished rows leave the batch (returned), the rest run one step."""
        logits, rows = batch.logits, batch.rows
        params = [row.request.params for row in rows]
        stop_ids = sorted(self.stop_ids)
        apply_repetition_penalty(logits, batch.seen, [p.repetition_penalty for p in params], exempt=stop_ids)
        ban_repeated_ngrams(logits, [row.request.prompt + row.tokens for row in rows],
                            [p.no_repeat_ngram_size for p in params], exempt=stop_ids)
        held = [i for i, row in enumerate(rows) if len(row.tokens) < row.request.params.min_new_tokens]
        if held and stop_ids:  # one indexed write for every row whose reply may not end yet
            logits[torch.tensor(held).unsqueeze(1), torch.tensor(stop_ids)] = float("-inf")
        chosen = sample_next(logits, params, [row.rng for row in rows]).tolist()
        going = [self._step(row, token) for row, token in zip(rows, chosen, strict=True)]
        finished = [row for row, goes in zip(rows, going, strict=True) if not goes]
        keep = [i for i, goes in enumerate(going) if goes]
        if not keep:
            batch.rows = []
            return finished
        if finished:  # finished rows leave the batch, and the cache with them
            index = torch.tensor(keep, device=self.device)
            batch.cache.batch_select_indices(index)
            batch.mask, batch.last_position = batch.mask[index], batch.last_position[index]
            batch.rows = [rows[i] for i in keep]
            batch.seen = batch.seen[index]
            chosen = [chosen[i] for i in keep]
        step = torch.tensor(chosen, device=self.device).unsqueeze(1)
        batch.seen = torch.cat([batch.seen, step], dim=1)
        batch.mask = torch.cat([batch.mask, torch.ones_like(step)], dim=1)
        batch.last_position = batch.last_position + 1
        positions = batch.last_position.unsqueeze(1)
        if self.decoder is not None:
            batch.logits = self.decoder(step, positions, batch.mask, batch.cache).float()
            return finished
        output = self.model(input_ids=step, attention_mask=batch.mask, position_ids=positions, cache=batch.cache,
                            use_cache=True, **self._adapter_names(batch.rows))
        batch.cache, batch.logits = output.cache, output.logits[:, -1, :].float()
        return finished

    def _step(self, row: _Decoding, token: int) -> bool:
        """Take one token for `row`; False when the row is finished."""
        request = row.request
        if request.cancelled.is_set():
            row.finish_reason = "cancelled"
            return False
        if token in self.stop_ids:  # the closing token itself is not part of the reply
            row.finish_reason = "stop"
        else:
            row.tokens.append(token)
        decoded = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        if not row.finish_reason and any(marker and marker in decoded
                                         for marker in (*self.markers, *request.params.stop)):
            row.finish_reason = "stop"
        if not row.finish_reason and len(row.tokens) >= request.params.max_new_tokens:
            row.finish_reason = "length"
        if request.on_text is not None:
            self._stream(row, decoded, final=bool(row.finish_reason))
        return not row.finish_reason

    def _stream(self, row: _Decoding, decoded: str, *, final: bool) -> None:
        """Pass on the part of the cleaned reply that later tokens can no longer change."""
        stop = row.request.params.stop
        text = clean_reply(decoded, stop, self.markers)
        if not final:
            # Hold back what could still become a stop string or trailing space (`clean_reply` already drops an
            # unfinished UTF-8 character).
            hold = max((len(marker) for marker in (*self.markers, *stop)), default=1) - 1
            text = clean_reply(decoded[: max(0, len(decoded) - hold)], stop, self.markers)
        if text.startswith(row.sent) and len(text) > len(row.sent):
            delta, row.sent = text[len(row.sent):], text
            row.request.on_text(delta)  # type: ignore[misc]


def _persona(row: _Decoding) -> str:
    return row.request.adapter or ""


def _rng(seed: int | None) -> torch.Generator:
    return torch.Generator().manual_seed(seed if seed is not None else random.getrandbits(63))
