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

# The chain that exists today, on this repository's own docs (no downloads): train a BPE tokenizer → clean,
# filter, deduplicate and tokenize the docs → pretrain a tiny InternLM2-architecture model → plot its curves →
# export an HF folder → convert it to the Llama layout → generate from both (identical output) → chat.
quickstart: install
	rm -rf $(QUICKSTART_DIR)
	$(PUYU) tokenizer train README.md docs --vocab-size 1024 --out $(QUICKSTART_DIR)/tokenizer
	$(PUYU) data prepare --input README.md --input docs --output $(QUICKSTART_DIR)/data \
		--tokenizer $(QUICKSTART_DIR)/tokenizer --workers 1
	$(PUYU) pretrain configs/pretrain/internlm2-tiny.yaml run_dir=$(QUICKSTART_DIR)/pretrain \
		'data.train=[{path: $(QUICKSTART_DIR)/data/tokens}]' model.overrides.vocab_size=1024 max_steps=100
	$(PUYU) export $(QUICKSTART_DIR)/pretrain --out $(QUICKSTART_DIR)/internlm2-tiny
	$(PUYU) model info $(QUICKSTART_DIR)/internlm2-tiny
	$(PUYU) convert $(QUICKSTART_DIR)/internlm2-tiny --to llama --out $(QUICKSTART_DIR)/llama-tiny
	$(PUYU) generate $(QUICKSTART_DIR)/internlm2-tiny --prompt "The model" --max-tokens 48 --temperature 0
	$(PUYU) generate $(QUICKSTART_DIR)/llama-tiny --prompt "The model" --max-tokens 48 --temperature 0
	@echo
	@echo "Data report:   $(QUICKSTART_DIR)/data/report.md"
	@echo "Loss curve:    $(QUICKSTART_DIR)/pretrain/plots/loss.png"
	@echo "Next:          $(PUYU) chat $(QUICKSTART_DIR)/internlm2-tiny"

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/load_model.py
	$(PY) benchmarks/decode_speed.py
	$(PY) benchmarks/data_dedup.py
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(QUICKSTART_DIR) .pytest_cache .ruff_cache
