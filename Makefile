# Two entry points: `make demo` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export LENSLLM_NB_DATA ?= $(abspath ../shared/benchmarks)

.PHONY: demo test venv kernel lab clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	touch $@

# torch first and pinned, so nothing later pulls a multi-GB CUDA build.
$(VENV)/.installed-dev: $(VENV)/.created pyproject.toml
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	touch $@

kernel: $(VENV)/.installed-dev
	$(PY) -m ipykernel install --sys-prefix --name lensllm-nb --display-name "Python (lensllm-nb)" >/dev/null

venv: $(VENV)/.installed-dev kernel

demo: venv
	$(VENV)/bin/lensllm-nb demo

# JupyterLab on the notebooks with the lensllm-nb kernel; as root Jupyter needs --allow-root.
lab: venv
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) reports .pytest_cache
