# Two entry points: `make demo` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export LENSLLM_NB_DATA ?= $(abspath ../shared/benchmarks)

.PHONY: demo test venv kernel chromium clean

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

# The browser tests (tests/browser) drive the system Chromium through Playwright (installed
# by the dev extra); Playwright's own browser download needs a network CI does not have.
chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser tests (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| echo "could not install chromium; the browser tests will be skipped: run 'apt-get install -y chromium'"; \
	else echo "chromium is missing; the browser tests will be skipped: run 'sudo apt-get install -y chromium'"; fi

test: venv chromium
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) reports .pytest_cache
