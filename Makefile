# One-line targets around the CLI, pytest and docker compose. No logic lives here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel of torch by default (a bare `torch` pulls a multi-GB CUDA build).
# GPU users: make TORCH_SPEC='torch==2.13.0' TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

COMPOSE ?= docker compose
# The compose file mounts this folder's models/ as the `models` volume: an absolute path.
export SOBESEDNIK_MODELS_DIR ?= $(CURDIR)/models

.PHONY: venv test lint demo demo-bot bench build run stop logs clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check src tests bench

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/sobesednik demo

demo-bot: venv
	$(BIN)/sobesednik demo --bot

bench: venv
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/adapters.py

build:
	$(COMPOSE) build

# --wait: returns once the service and the bot report healthy (fails if one does not).
run:
	$(COMPOSE) up -d --wait

stop:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache .hypothesis
