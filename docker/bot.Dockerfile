# syntax=docker/dockerfile:1
# The Telegram bot: `sobesednik bot`. No torch in this image: the bot only speaks HTTP to the service.
#
#   docker build -f docker/bot.Dockerfile -t sobesednik-bot .
#   docker run -e SOBESEDNIK_BOT_TOKEN=... -e SOBESEDNIK_BOT_SERVICE_URL=http://api:8000 sobesednik-bot
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject alone, for layer caching.
COPY pyproject.toml README.md ./
RUN mkdir -p src/sobesednik && echo '__version__ = "0"' > src/sobesednik/__init__.py \
    && pip install ".[bot]" && pip uninstall -y sobesednik
COPY src ./src
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 sobesednik && mkdir -p /data && chown sobesednik /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SOBESEDNIK_BOT_STORAGE=sqlite:////data/history.sqlite3 \
    SOBESEDNIK_BOT_HEARTBEAT_FILE=/tmp/sobesednik-bot.heartbeat
USER sobesednik
WORKDIR /home/sobesednik
VOLUME ["/data"]
# Local and cheap: a heartbeat touched after each long poll, or GET /healthz of the webhook listener.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "sobesednik.bot.health"]
ENTRYPOINT ["sobesednik", "bot"]
