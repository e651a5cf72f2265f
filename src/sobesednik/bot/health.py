"""The bot container's healthcheck: is this process still polling Telegram, or serving its webhook?

    python -m sobesednik.bot.health     # exit 0: healthy; 1: not, with one line saying why

Cheap and local, no call to Telegram: in polling mode the bot touches `heartbeat_file` after every answered
long poll (`HeartbeatMiddleware`), so a file older than `MAX_AGE` means polling stopped or keeps failing; in
webhook mode the listener answers GET /healthz on its own port. Either way a problem of the history store (a
database that cannot be written, `HistoryStore.problem`) makes the bot unhealthy: the heartbeat file then holds
its line, and /healthz answers 503 with it.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sobesednik.bot.settings import BotSettings
from sobesednik.errors import ConfigError

HEALTH_PATH = "/healthz"
# Seconds: aiogram long-polls for 10 s, then backs off up to ~5 s after a failed poll; three missed polls is down.
MAX_AGE = 60.0


def touch(path: Path, problem: str | None = None) -> None:
    """Record that the bot has just heard from Telegram, and what is wrong with it, if anything."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(problem or "")


def check(settings: BotSettings, now: float | None = None) -> str | None:
    """None when healthy, else the reason."""
    if settings.webhook_url is not None:
        url = f"http://127.0.0.1:{settings.webhook_port}{HEALTH_PATH}"
        try:
            with urllib.request.urlopen(url, timeout=4) as response:
                return None if response.status == 200 else f"{url} answered HTTP {response.status}"
        except urllib.error.HTTPError as error:
            return error.read().decode(errors="replace").strip() or f"{url} answered HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return f"the webhook listener does not answer {url} ({error})"
    if settings.heartbeat_file is None:
        return "SOBESEDNIK_BOT_HEARTBEAT_FILE is not set: polling cannot be checked (the bot image sets it)"
    try:
        age = (time.time() if now is None else now) - settings.heartbeat_file.stat().st_mtime
        problem = settings.heartbeat_file.read_text().strip()
    except FileNotFoundError:
        return f"no heartbeat at {settings.heartbeat_file}: the bot has not polled Telegram yet"
    if problem:
        return problem
    if age > MAX_AGE:
        return f"the last poll of Telegram ended {age:.0f} s ago (more than {MAX_AGE:g} s): polling stopped"
    return None


def main() -> int:
    try:
        problem = check(BotSettings())
    except ConfigError as error:
        problem = str(error)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
