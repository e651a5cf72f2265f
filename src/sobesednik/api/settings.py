"""ApiSettings: everything `sobesednik serve` needs, from flags, `SOBESEDNIK_API_*` environment variables or `.env`.

    SOBESEDNIK_API_MODEL=models/my-chat SOBESEDNIK_API_KEY=secret sobesednik serve
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Settings of the generation service; validated at construction."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_API_", env_file=".env", extra="ignore")

    model: str = Field("models/sobesednik", description=(
        "MODEL_DIR from `export` or RUN_DIR from `train`; with --adapter, the base model (dir or Hub id) they share"))
    # singular, like `prepare --chat`: the field names the repeatable flag (`--adapter a=DIR --adapter b=DIR`)
    adapter: list[str] = Field([], description=(
        "personas as NAME=DIR, a RUN_DIR of `train` or a peft adapter dir trained on --model, served beside the base "
        "in one process (repeat the flag; env: a JSON list); a request's `model` picks one by NAME, and requests for "
        "different ones decode in one batch"))
    model_name: str = Field("", description=(
        "The id clients see in /v1/models and responses; empty means the model directory's name."))
    host: str = Field("127.0.0.1",
                      description="loopback by default: exposing the service is a deliberate choice (0.0.0.0)")
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    key: SecretStr | None = Field(None,
                                  description="SOBESEDNIK_API_KEY; when set, /v1/* needs `Authorization: Bearer <key>`")

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description=(
        "auto: what `hardware.serving_path` measured fastest at greedy top-1 agreement >= 0.95 with float32: bfloat16 "
        "where the CPU/GPU computes it natively, else float32 (with int8 below); bf16 / fp16 / fp32 too."))
    quantize: Literal["auto", "none", "int8"] = Field("auto", description=(
        "auto: dynamic int8 linears on a CPU without native bf16, on our kernel where it builds (AVX2 EPYC Zen 3, "
        "16 users: 3.0x float32's tokens/s, 9-10.4x a naive endpoint); "
        "where bf16 is packed for oneDNN, prompts on bf16 and decoding steps of 1-4 users on a weight-only int8 "
        "copy, by our int8 kernel (built with the C compiler at first start; AMX: a batch-1 reply 1.3-1.5 s against "
        "1.8-2.2 on torch's kernel); personas' LoRA weights stay float; none / int8 force it."))
    threads: int | None = Field(None, ge=1,
                                description="torch intra-op threads; None keeps torch's default (all cores)")

    max_batch_size: int = Field(16, ge=1, le=256,
                                description="rows decoded together; 16 fills 2 CPU cores' matrix units")
    max_wait_ms: float = Field(10, ge=0, le=1000,
                               description="how long a request may wait for others to join its batch")
    join_fraction: float = Field(0.5, ge=0, le=1, description=(
        "New requests join a running batch while it decodes fewer rows than this share of max_batch_size, else wait "
        "for it to shrink: 0.5 measured best on a 2-core CPU (docs/benchmarks.md); 1 always joins (GPUs), 0 never."))
    max_queue: int = Field(64, ge=1, description="rows waiting beyond which requests get 429")
    request_timeout_s: float = Field(120, gt=0, description="a request still unanswered after this gets 504")

    max_messages: int = Field(200, ge=1,
                              description="messages per request; older turns are dropped anyway to fit the context")
    max_chars: int = Field(20_000, ge=1, description="characters over all messages (or the prompt) of one request")
    max_n: int = Field(8, ge=1, description="choices per request")
    max_tokens_limit: int = Field(512, ge=1, description="upper bound a request may ask for as max_tokens")
    max_body_bytes: int = Field(1 << 20, ge=1024, description=(
        "bytes of one request body, refused with 413 before parsing: max_chars of Cyrillic as JSON \\u escapes (6 "
        "bytes each) and the framing of max_messages messages fit in 1 MiB with room to spare"))
    body_timeout_s: float = Field(30, gt=0, description=(
        "a body still incomplete after this gets 408; 1 MiB takes 1 s at 10 Mbit/s"))

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_short_names(cls, dtype: object) -> object:
        """`bf16`, `fp16` and `fp32` (the names `train --precision` uses) mean the same dtypes here."""
        short = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
        return short.get(dtype, dtype) if isinstance(dtype, str) else dtype

    @field_validator("key")
    @classmethod
    def _key_not_blank(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            return None  # an empty SOBESEDNIK_API_KEY= line means "no key", not "the empty key"
        return key

    @field_validator("adapter")
    @classmethod
    def _adapters_named_once(cls, adapters: list[str]) -> list[str]:
        from sobesednik.inference.adapters import parse_adapters

        parse_adapters(adapters)  # NAME=DIR each, no name twice
        return adapters

    @model_validator(mode="after")
    def _check(self) -> ApiSettings:
        if self.quantize == "int8" and self.dtype not in ("auto", "float32"):
            raise ValueError("quantize=int8 works on float32 weights: drop --dtype or --quantize")
        return self

    @property
    def served_name(self) -> str:
        """The id of `model` (the base, when there are adapters) in /v1/models and responses."""
        return self.model_name or Path(self.model).name or self.model

    @property
    def personas(self) -> dict[str, Path]:
        """The adapters as {name: dir}, in the order given."""
        from sobesednik.inference.adapters import parse_adapters

        return parse_adapters(self.adapter)
