# Two entry points for a newcomer:  `make demo`  (set up + run the main job)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch. On this project's machines the 2.13.0 CPU wheel lies on local disk; elsewhere
# override, e.g.  make setup TORCH="torch --index-url https://download.pytorch.org/whl/cpu"  or a CUDA build.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean label-setup label browser

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

# The report's browser test (tests/test_report_page.py) needs a headless Chromium. Where none is found and apt-get is
# at hand (as root), Debian's chromium is installed quietly; where that fails, the test is skipped with the reason.
browser:
	@if [ -z "$$DCL_CSTP_BROWSER" ] \
		&& ! { command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null 2>&1 \
		&& command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium for the browser test (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		  || { apt-get update -qq >/dev/null 2>&1 \
		       && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; } \
		|| echo "chromium could not be installed: the browser test will be skipped"; \
	fi

# With CI=true (as .ci/run runs it) the MONAI Label environment is built too, so that its server test runs;
# locally `make label-setup` once does the same, otherwise that test is skipped with the reason.
test: setup browser $(if $(filter true 1,$(CI)),label-setup)
	$(BIN)/ruff check dcl_cstp_ext tests ci monailabel_app
	@# pytest exits 5 when it collects no test; that is reported, not failed.
	$(BIN)/python -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected'; exit 0; fi; exit $$rc

bench: setup
	$(BIN)/dcl-cstp bench pretrain --methods dcl_cstp,simsiam,mocov2,simclr --backbone resnet18 --image-size 64 --batch-size 16 --steps 10 --json bench_pretrain.json

# MONAI Label 0.8.5 app (monailabel_app/) in its own environment, so that the main one stays lean.
# monailabel imports torchvision, and PyPI's torchvision wheels need PyPI's (CUDA) torch, not the CPU build above, so
# this environment gets its own torch. Where the PyTorch index can be reached, a lean CPU-only one:
#   make label-setup LABEL_TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
# The pins keep monailabel 0.8.5 startable (pydicom 3, pynetdicom 3 and dicomweb-client 0.60 break its imports).
# Measured here: 5.5 min and 8.3 GB (PyPI torch with its CUDA libraries 5 GB, ITK 1.5 GB).
LABEL_VENV ?= .venv-label
LABEL_TORCH ?= torch torchvision
LABEL_BIN := $(LABEL_VENV)/bin
LABEL_STUDIES ?= $(LABEL_VENV)/demo_studies
LABEL_HOST ?= 127.0.0.1
LABEL_PORT ?= 8000
LABEL_CONF ?=

$(LABEL_VENV)/.installed: setup.cfg pyproject.toml monailabel_app/label_requirements.py
	$(PYTHON) -m venv $(LABEL_VENV)
	$(LABEL_BIN)/python -m pip install -q --upgrade pip
	@# both without their requirements first; then those requirements less sam2 and pydicom (see label_requirements.py)
	$(LABEL_BIN)/python -m pip install -q --no-deps monailabel==0.8.5 -e .
	$(LABEL_BIN)/python monailabel_app/label_requirements.py > $(LABEL_VENV)/requirements.txt
	$(LABEL_BIN)/python -m pip install -q $(LABEL_TORCH)
	$(LABEL_BIN)/python -m pip install -q -r $(LABEL_VENV)/requirements.txt "pydicom<3" "pynetdicom<3" "dicomweb-client<0.60"
	@touch $@

label-setup: $(LABEL_VENV)/.installed

# Serves the bundles on built-in demo images (LABEL_STUDIES=/path/to/images for your own). .venv-label/demo_bundles links
# each bundle that has trained weights (bundles/<name>/models/model.pt); the others get UNTRAINED random tiny weights.
# More server options: LABEL_CONF="--conf preset cpu" (segmentation models trained with the cpu preset).
LABEL_DEMO_STUDIES := $(LABEL_VENV)/demo_studies
label: label-setup
	$(LABEL_BIN)/python monailabel_app/prepare.py --bundles-out $(LABEL_VENV)/demo_bundles \
		$(if $(filter $(LABEL_DEMO_STUDIES),$(LABEL_STUDIES)),--studies $(LABEL_STUDIES))
	@# python -m monailabel.main is what the `monailabel` script runs, with whichever `python` comes first on PATH
	$(LABEL_BIN)/python -m monailabel.main start_server --app monailabel_app --studies $(LABEL_STUDIES) \
		--host $(LABEL_HOST) --port $(LABEL_PORT) --conf bundles $(LABEL_VENV)/demo_bundles $(LABEL_CONF)

clean:
	rm -rf $(VENV) $(LABEL_VENV) *.egg-info .pytest_cache
