# Two entry points (see README): `make demo` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
# Real evaluation data: $SAMD_EVAL_DIR, else ../shared/data/eval, else the synthetic demo data.
EVAL_DIR ?= $(or $(SAMD_EVAL_DIR),$(wildcard ../shared/data/eval),data/demo)
MODELS ?= minilm-l6 e5-small
DEMO_ARGS ?= --max-train 2000 --max-test 1000 --dims 384 256 128 64
PYTEST_ARGS ?=

.PHONY: setup models demo test lint validate clean

setup: .venv/.installed

.venv/.installed: requirements.txt requirements-gpu.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

models: setup
	$(PY) scripts/offline_models.py $(MODELS)

data/demo/stsb_test.csv: | setup
	$(PY) scripts/prepare_demo_multitask_data.py --out data/demo

demo: models $(if $(filter data/demo,$(EVAL_DIR)),data/demo/stsb_test.csv)
	@mkdir -p outputs
	for m in $(MODELS); do \
	  $(PY) -m samd_common.evaluate --model $$m --eval-dir $(EVAL_DIR) $(DEMO_ARGS) \
	    --output outputs/eval-$$m.json || exit 1; \
	done

lint: setup
	$(PY) -m ruff check .

test: models lint
	SAMD_EVAL_DIR=$(EVAL_DIR) $(PY) -m pytest -rs $(PYTEST_ARGS)

clean:
	rm -rf .venv outputs .pytest_cache .ruff_cache
