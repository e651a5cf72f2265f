"""The Telegram bot: aiogram routers, per-chat history, and the HTTP client to the generation service.

Importing this package imports nothing heavy (no aiogram, no torch), so `sobesednik chat` can reuse
`sobesednik.bot.client.ServiceClient`. Run the bot with `sobesednik bot` (settings from `SOBESEDNIK_BOT_*`).
"""
