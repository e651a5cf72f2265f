"""The OpenAI wire format the service speaks: requests, responses, stream chunks and the error envelope.

Field names, types and response shapes follow OpenAI's API so that the official clients work unchanged;
`top_k`, `repetition_penalty` and `no_repeat_ngram_size` are the extra sampling fields vLLM also accepts.
A field left out (or null) takes the model's `generation_config` default. Unknown fields are ignored, as
OpenAI-compatible servers do, so clients that send `presence_penalty` or `user` keep working.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

FinishReason = Literal["stop", "length", "empty"]


def _encodable(text: object) -> object:
    """JSON's `\\ud800` escape parses into a lone surrogate, which no tokenizer can encode: refuse it here,
    before pydantic's own str check, so every text field says the same."""
    if not isinstance(text, str):
        return text  # pydantic's str validation names the wrong type
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"text holds a lone UTF-16 surrogate at character {error.start}: "
                         "send valid Unicode (a surrogate pair, or the character itself)") from None
    return text


Text = Annotated[str, BeforeValidator(_encodable)]


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="a persona (adapter) listed by /v1/models, or the base; left out: "
                                                "the base. A service without personas ignores it")
    max_tokens: int | None = Field(None, ge=1, description="reply length limit in tokens; default from the model")
    temperature: float | None = Field(None, ge=0, le=5, description="0 is greedy; default from the model")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="0 disables top-k")
    repetition_penalty: float | None = Field(None, ge=0.01, le=10, description="1 disables it; below 1 favours repeats")
    no_repeat_ngram_size: int | None = Field(None, ge=0, le=10, description="0 disables it")
    min_tokens: int | None = Field(None, ge=0, description="tokens before the reply may end (vLLM's name)")
    n: int = Field(1, ge=1, description="how many replies to generate")
    stop: Text | list[Text] | None = Field(None, description="up to 4 strings that end the reply")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="makes sampling reproducible")
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop strings, given {len(stops)}")
        if any(not s or len(s) > 100 for s in stops):
            raise ValueError("each stop string must have 1 to 100 characters")
        return stops


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="system and developer messages are accepted and left out: the dialogue format has no place "
                    "for them")
    content: Text


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(GenerationRequest):
    prompt: Text = Field(min_length=1, description="raw text continued by the model (no dialogue format added)")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "sobesednik"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    detail: str | None = None
