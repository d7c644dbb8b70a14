# puyu: `make quickstart` runs the chain that exists end to end; `make test` runs the test suite.
# Both create .venv on first use. torch is pinned to 2.13.0 and installed first: that resolves to a
# local CPU build here, where any other spec would pull gigabytes of CUDA packages.

VENV ?= .venv
PY := $(VENV)/bin/python
PUYU := $(VENV)/bin/puyu
QUICKSTART_DIR ?= runs/quickstart

.PHONY: install test lint format quickstart bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Until the full pipeline lands: train a tokenizer on the project's own docs, create a tiny random
# InternLM2 model with it, convert it to the Llama layout, and generate from both layouts.
quickstart: install
	$(PUYU) tokenizer train README.md docs --vocab-size 1024 --out $(QUICKSTART_DIR)/tokenizer
	$(PUYU) model init --preset internlm2-tiny --set vocab_size=1024 --tokenizer $(QUICKSTART_DIR)/tokenizer \
		--out $(QUICKSTART_DIR)/internlm2-tiny
	$(PUYU) model info $(QUICKSTART_DIR)/internlm2-tiny
	$(PUYU) convert $(QUICKSTART_DIR)/internlm2-tiny --to llama --out $(QUICKSTART_DIR)/llama-tiny
	$(PUYU) generate $(QUICKSTART_DIR)/internlm2-tiny --prompt "The model" --max-tokens 24 --temperature 0
	$(PUYU) generate $(QUICKSTART_DIR)/llama-tiny --prompt "The model" --max-tokens 24 --temperature 0
	$(PUYU) generate $(QUICKSTART_DIR)/internlm2-tiny --chat --prompt "Hello!" --max-tokens 24 --seed 0
	@echo "Next: $(PUYU) chat $(QUICKSTART_DIR)/internlm2-tiny"

bench: install
	$(PY) benchmarks/load_model.py
	$(PY) benchmarks/decode_speed.py

clean:
	rm -rf $(QUICKSTART_DIR) .pytest_cache .ruff_cache
