# xaisec: one-command entry points. Each target creates the virtual environment on first use.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
SMK     := $(VENV)/bin/snakemake
CORES   ?= all

.PHONY: smoke test test-slow bench gpu-check cpu full lint clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

## The whole DAG on the embedded offline `shapes` data set (minutes on 2 CPU cores).
smoke: $(VENV)/.installed
	$(SMK) --cores $(CORES) --configfile config/smoke.yaml --profile workflow/profiles/smoke

## Unit tests and the smoke workflow test.
test: $(VENV)/.installed
	$(PY) -m pytest

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

bench: $(VENV)/.installed
	$(PY) -m pytest -m bench -s

## CUDA against the CPU (`pytest -m gpu`), the smoke workflow with `device: cuda`, one CFN Table 2
## cell on real CIFAR-10 with images/s (GPU machine; scripts/gpu_check.sh: knobs, device tool).
gpu-check: $(VENV)/.installed
	PYTHON=$(PY) bash scripts/gpu_check.sh

## Real CIFAR-10 and GTSRB from ../shared/data at reduced scale (2 CPU cores, < 2 h).
cpu: $(VENV)/.installed
	$(SMK) --cores $(CORES) --configfile config/cpu.yaml

## The papers' full settings (GPU workstation).
full: $(VENV)/.installed
	$(SMK) --cores $(CORES)

lint: $(VENV)/.installed
	$(SMK) --lint --configfile config/smoke.yaml

clean-venv:
	rm -rf $(VENV)
