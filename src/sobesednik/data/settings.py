"""`PrepareSettings`: every option of `sobesednik prepare`, from flags, `SOBESEDNIK_PREPARE_*` env or `.env`.

    PrepareSettings(exports=[Path("result.json")], out=Path("data"), speaker=["Аня"])

Each field is a CLI flag of the same name in kebab case (`--gap-minutes` ↔ `SOBESEDNIK_PREPARE_GAP_MINUTES`).
docs/data.md explains every default; the short reason sits next to each field here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sobesednik.flags import Flag, Positional

SplitBy = Literal["random", "time"]


class PrepareSettings(BaseSettings):
    """Options of the `prepare` stage; validated at construction."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_PREPARE_", env_file=".env", extra="ignore")

    exports: Annotated[list[Path], Positional("EXPORT")] = Field([], description=(
        "Telegram Desktop `result.json` files; the CLI's positional arguments"))
    out: Path = Field(Path("data"), description="the dataset dir that `train --data` reads")
    chat: list[str] = Field([],
                            description="names or ids of chats to keep from a full-account export; empty: every chat")
    speaker: list[str] = Field([], description="ids or names whose messages become targets; empty: every author")
    gap_minutes: float = Field(60.0, gt=0, description="minutes of silence that end a conversation (an evening's talk)")
    merge_seconds: float = Field(120.0, ge=0, description="one author's messages this close (seconds) form one turn")
    context_turns: int = Field(3, ge=1,
                               description="turns of context before a reply; ruDialoGPT was tuned on short contexts")
    min_chars: int = Field(2, ge=1, description="characters a reply needs: \"+\" or \"?\" alone teaches nothing")
    max_chars: int = Field(1000, ge=1,
                           description="characters per turn: longer replies are dropped, longer context cut")
    keep_forwarded: Annotated[bool, Flag(off="--skip-forwarded")] = Field(False, description=(
        "forwarded messages are someone else's words; by default they break the talk"))
    keep_via_bot: Annotated[bool, Flag(off="--skip-via-bot")] = Field(False, description=(
        "inline-bot messages (gifs, polls, music) are not the author's words either"))
    mask_pii: bool = Field(False, description=(
        "replace phones, e-mails, cards, @usernames, profile links with <PHONE>-like tags, and people's names with "
        "per-person pseudonyms (needs the `privacy` extra)"))
    valid: float = Field(0.05, ge=0, lt=1, description="share of samples for validation (whole conversations)")
    test: float = Field(0.05, ge=0, lt=1, description="share of samples for the final test (whole conversations)")
    split_by: SplitBy = Field("random",
                              description="\"time\": the newest conversations become test, the next newest valid")
    seed: int = Field(0, description="seeds the random split; the same inputs and options give the same files")
    show_names: Annotated[bool, Flag(off="--hide-names")] = Field(False, description=(
        "write authors' display names into stats (they are personal data)"))
    progress: bool = Field(True, description="a progress bar on stderr, shown for inputs of at least 8 MB")
    per_speaker: bool = Field(False, description="write one dataset per author with at least "
                                                  "--min-speaker-replies replies, each in OUT/<author id>, for "
                                                  "one `train` per person (personas); the list in OUT/personas.json")
    min_speaker_replies: int = Field(
        300, ge=1, description="train-split replies an author needs for a --per-speaker dataset: 374 replies "
                               "trained a persona attributed 83 % to its speaker (docs/benchmarks.md, persona)")

    @model_validator(mode="after")
    def _check(self) -> PrepareSettings:
        if self.valid + self.test >= 1:
            raise ValueError(
                f"valid ({self.valid}) + test ({self.test}) must leave samples for training (sum below 1)"
            )
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        if self.per_speaker and self.speaker:
            raise ValueError("--per-speaker makes a dataset of every author with enough replies: drop --speaker")
        return self
