"""The bot's routers, one per module: commands, text messages, errors (joined in `bot/main.py`)."""
