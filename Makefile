# Two entry points: `make demo` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
export LENSLLM_NB_DATA ?= $(abspath ../shared/benchmarks)

.PHONY: demo test venv kernel lab chromium clean postgres

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

# The browser tests (tests/browser) drive the system Chromium through Playwright (installed
# by the dev extra); Playwright's own browser download needs a network CI does not have.
chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser tests (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| echo "could not install chromium; the browser tests will be skipped: run 'apt-get install -y chromium'"; \
	else echo "chromium is missing; the browser tests will be skipped: run 'sudo apt-get install -y chromium'"; fi

# The store tests start their own PostgreSQL server (initdb + pg_ctl in a temp folder): install
# Debian's server package when it is missing and we are root, without a default cluster.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	  apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >/dev/null; \
	else echo "make test: PostgreSQL is missing, so its store tests will be skipped; install it with: sudo apt-get install -y postgresql"; fi

# Import layers first (seconds; pyproject.toml [tool.importlinter]), then the tests.
test: venv postgres chromium
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) reports .pytest_cache
