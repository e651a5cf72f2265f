"""The errors sobesednik raises on purpose.

Every message says what was found, where, and what to do about it. Each interface translates them at one
boundary: the CLI prints one line and exits with `exit_code`, the API returns an OpenAI error envelope, the bot
answers with a friendly Russian text.
"""

from __future__ import annotations


class SobesednikError(Exception):
    """Base of the errors a user can fix; never raised for programming mistakes."""

    exit_code = 2  # the conventional "usage / bad input" exit status


class ExportFormatError(SobesednikError):
    """A Telegram export that cannot be read: missing, not JSON, truncated, without messages."""


class DatasetError(SobesednikError):
    """A prepared dataset directory or JSONL file that is missing or does not follow the contract."""


class ConfigError(SobesednikError):
    """A setting, flag or config file with a value that cannot work."""


class ModelDirError(SobesednikError):
    """A model or run directory (or Hub id) that cannot be loaded."""


class ServiceError(SobesednikError):
    """The generation service cannot be reached or answered with an error."""

    exit_code = 1
