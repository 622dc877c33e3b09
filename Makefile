# Two entry points: `make demo` (main job) and `make test` (lint, types, tests).
# Both create .venv if missing and install torch==2.13.0 first, unless .venv already imports torch:
# the CPU build from PyTorch's CPU wheel index where that is reachable, else the plain pin (on our
# machines and in CI it resolves to a local CPU file; from PyPI on Linux it is a multi-GB CUDA build).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-v1
# The raw tables: ../shared/gym_data/raw when it exists (this repository's layout); otherwise nothing is set
# and the gym reads the cache that `autollm-sampler gym fetch` fills.
SHARED_RAW := $(abspath ../shared/gym_data/raw)
ifneq ($(wildcard $(SHARED_RAW)),)
export AUTOLLM_GYM_RAW ?= $(SHARED_RAW)
endif
# torch: on a machine that reaches the PyTorch CPU wheel index, take the CPU build from there (a plain
# `torch` from PyPI is a multi-GB CUDA build on Linux); elsewhere (e.g. our CI, where a CPU file is on disk)
# `pip install torch==2.13.0` as is. GPU users: install the torch build for their CUDA first, then `make`.
# The check is one bounded request (TORCH_INDEX_TIMEOUT seconds), made only when the install recipe runs;
# no curl, no answer or an error all mean the plain pin (tests/examples/test_makefile.py).
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_TIMEOUT ?= 5
TORCH_INDEX = $(shell curl -fsS -m $(TORCH_INDEX_TIMEOUT) -o /dev/null $(TORCH_INDEX_URL)/torch/ 2>/dev/null && echo "--index-url $(TORCH_INDEX_URL) --extra-index-url https://pypi.org/simple")

.PHONY: demo test lint typecheck pytest bench bench-quick bench-user train train-tiny train-llm bench-llm install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0 $(TORCH_INDEX)
	$(BIN)/pip install -q -e ".[agent,llm,ray,bench,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/optuna_quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check autollm_sampler training tests examples gym_data

typecheck: $(STAMP)
	$(BIN)/mypy autollm_sampler training

pytest: $(STAMP)
	$(BIN)/python -m pytest -q -x --timeout=900

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/autollm-sampler bench --out docs/benchmarks

# the user-objective suite (held-out synthetic objectives, continuous and mixed spaces, failures)
bench-user: $(STAMP)
	$(BIN)/python -m autollm_sampler.benchmark.userobj --seeds 20 --out docs/benchmarks/user-objectives

bench-quick: $(STAMP)
	$(BIN)/autollm-sampler bench --quick --out runs/bench-quick

train: $(STAMP)
	$(BIN)/python -m training.pipeline --config training/configs/default.yaml

train-tiny: $(STAMP)
	$(BIN)/python -m training.pipeline --config training/configs/tiny.yaml --out runs/tiny

# The text-LLM backend (docs/text-llm.md): a tiny model from scratch, LoRA distillation and LoRA GRPO,
# then its benchmark rows next to the default backend.
train-llm: $(STAMP)
	$(BIN)/python -m training.llm --config training/configs/llm-tiny.yaml

bench-llm: $(STAMP)
	AUTOLLM_BENCH_LLM_AGENT=runs/llm-tiny/agent $(BIN)/autollm-sampler bench --setting A --history full --seeds 1 \
	  --methods agent-llm agent:runs/llm-tiny/agent-distilled agent agent-extrap transfer --out docs/benchmarks/text-llm --skip-latency

clean:
	rm -rf $(VENV) runs build *.egg-info
