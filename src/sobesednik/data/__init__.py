"""The `prepare` stage: Telegram Desktop exports → dialogue datasets (see docs/data.md)."""
