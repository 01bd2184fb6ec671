# Two commands: `make demo` (quick start on a phantom) and `make test` (the whole suite). Both create .venv when
# absent and install the three distributions editable. Nothing is fetched from outside the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install first. GPU users: install your CUDA build into .venv yourself, then pass TORCH_SPEC=
ifeq ($(shell uname -m),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
STAMP := $(VENV)/.mribench-installed
DEMO_TASK ?= phantom-brats-missing2
# Models `make leaderboard` and `make ablations` train side by side (mribench reproduce --jobs): one worker process per
# core, each at one torch thread, so the numbers are those of one job. `make leaderboard JOBS=4` on four cores.
JOBS ?= 2

.PHONY: install demo test bench leaderboard ablations readme clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml plugins/baselines/pyproject.toml plugins/copedit/pyproject.toml
	$(BIN)/pip install --quiet --upgrade "setuptools>=68" wheel
	$(if $(strip $(TORCH_SPEC)),$(BIN)/pip install $(TORCH_SPEC))
	$(BIN)/pip install -e ".[test]" -e plugins/baselines -e plugins/copedit
	touch $(STAMP)

install: $(STAMP)

# suites/demo.yaml: prints its plan and estimate, runs (resumable), then prints the task's table.
demo: install
	$(BIN)/mribench reproduce --suite demo --task $(DEMO_TASK) --runs runs/demo
	$(BIN)/mribench leaderboard --task $(DEMO_TASK) --runs runs/demo

test: install
	$(BIN)/pytest

# Every speed benchmark, 5 repeats (median judged against its goal); BENCH_ARGS="mdit3d-c --json out.json" narrows it.
bench: install
	$(BIN)/mribench bench $(BENCH_ARGS)

# Every method on every phantom task at the cpu preset, then leaderboard/ and README.md's results block regenerated
# (resumes when rerun).
leaderboard: install
	$(BIN)/mribench reproduce --jobs $(JOBS) --runs runs/leaderboard --output leaderboard --readme README.md

# CoPeDiT and its ablation variants (copedit-no-count, copedit-unet, ...) on the BraTS twin, missing 1, 3 seeds, in
# leaderboard's runs folder (the variants read CoPeDiT's stage-I tokenizers), the tokenizer and prompt analyses on
# CoPeDiT's seed-0 run, then leaderboard/ablations/ and README.md's ablations block regenerated (with the paper's
# ablation tables).
# Not part of `make leaderboard` (its time budget); `mribench reproduce --suite ablations --dry-run` prints the estimate.
ablations: install
	$(BIN)/mribench reproduce --suite ablations --jobs $(JOBS) --runs runs/leaderboard --output leaderboard/ablations \
		--readme README.md

# Runs nothing: leaderboard/'s tables and report, and README.md's results block, rebuilt from leaderboard/results.
readme: install
	$(BIN)/mribench reproduce --from-results --output leaderboard --readme README.md

clean:
	rm -rf runs
