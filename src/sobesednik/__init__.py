"""sobesednik: a Russian dialogue model and Telegram bot from your own chat export."""

__version__ = "0.1.0"
