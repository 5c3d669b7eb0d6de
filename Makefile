# Two entry points for a newcomer:  `make demo`  (set up + run the main job)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch. On this project's machines the 2.13.0 CPU wheel lies on local disk; elsewhere
# override, e.g.  make setup TORCH="torch --index-url https://download.pytorch.org/whl/cpu"  or a CUDA build.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/dcl-cstp demo

test: setup
	$(BIN)/ruff check dcl_cstp_ext tests ci
	@# pytest exits 5 when it collects no test; that is reported, not failed.
	$(BIN)/python -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected'; exit 0; fi; exit $$rc

bench: setup
	$(BIN)/dcl-cstp bench pretrain --methods dcl_cstp,simsiam,mocov2,simclr --backbone resnet18 --image-size 64 --batch-size 16 --steps 10 --json bench_pretrain.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
