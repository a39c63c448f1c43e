"""Drive JupyterLab and the offline reports in Debian's Chromium with Playwright.

Shared by the browser tests (``tests/browser``) and the widget-latency benchmark
(``benchmarks/bench_widget_latency.py``). Everything here looks at what a user sees:
rendered controls, images, table text and error messages, never at Python objects.

* `JupyterLab` starts a JupyterLab server from this Python environment on
  127.0.0.1 (random free port, a token, isolated ``JUPYTER_*`` folders) and stops it
  and every kernel it started, also when a test fails.
* `launch_chromium` starts the system Chromium (Playwright's own browser download
  needs a network this project does not have).
* The ``lab_*`` functions open, run and inspect notebooks through JupyterLab's UI.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "CHROMIUM_ARGS",
    "INSTALL_COMMAND",
    "WIDGET_ERROR_TEXTS",
    "JupyterLab",
    "find_chromium",
    "missing_requirements",
    "launch_chromium",
    "open_page",
    "prepare_notebook",
    "lab_open_notebook",
    "lab_wait_kernel_idle",
    "lab_current_notebook",
    "lab_run_all",
    "lab_errors",
    "widget_cell",
    "move_budget",
    "budget_readout",
    "widget_snapshot",
    "wait_for_new_output",
]

ROOT = Path(__file__).resolve().parents[2]
# Chromium as root needs --no-sandbox; the rest keeps it from calling home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_COMMAND = "apt-get install -y chromium"
# What ipywidgets' front end shows instead of a widget it cannot render.
WIDGET_ERROR_TEXTS = ("Error displaying widget", "Loading widget")
# JupyterLab settings for a quiet, deterministic UI: no news or update toasts, and every
# cell in the DOM (the default windowing leaves off-screen cells unrendered).
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
_START_TIMEOUT_S = 120
# "ename: evalue" of every error output of the notebook shown (null when none is shown).
# JupyterLab renders a traceback with the same markup as stderr text, so the notebook
# model is asked which outputs are errors.
_ERROR_OUTPUTS_JS = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.content || !panel.content.widgets) return null;
    const found = [];
    for (const cell of panel.content.widgets) {
        const outputs = cell.model.outputs;
        for (let i = 0; outputs && i < outputs.length; i++) {
            const output = outputs.get(i);
            if (output.type === 'error') {
                const json = output.toJSON();
                found.push(json.ename + ': ' + json.evalue);
            }
        }
    }
    return found;
}"""


def find_chromium() -> str | None:
    """Path of the Chromium to drive: ``$LENSLLM_NB_CHROMIUM``, else ``chromium`` on PATH."""
    for candidate in (os.environ.get("LENSLLM_NB_CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here (with the one command that fixes it), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the Playwright Python package is missing from this environment; run `make test` "
                "(it installs the `dev` extra into .venv)")
    if find_chromium() is None:
        return f"Chromium is not installed; run `sudo {INSTALL_COMMAND}` (or set LENSLLM_NB_CHROMIUM)"
    return None


def launch_chromium(playwright):
    """Start a headless system Chromium through Playwright."""
    return playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)


def open_page(browser, allowed_prefix, *, viewport=(1400, 1000)):
    """A page in a new context that may load only URLs starting with `allowed_prefix`.

    Returns
    -------
    page : playwright Page
    problems : dict
        ``console``: console errors and uncaught exceptions; ``failed``: requests
        that failed or were blocked (URL and reason). Filled as the page runs.
    """
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(allowed_prefix)
                  else route.abort("blockedbyclient"))
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems = {"console": [], "failed": []}
    page.on("console", lambda msg: problems["console"].append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems["console"].append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda req: problems["failed"].append(f"{req.url} ({req.failure})"))
    return page, problems


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """A JupyterLab server of this Python environment, private to one test session.

    Parameters
    ----------
    root_dir : Path
        The folder the file browser shows (notebooks are opened relative to it).
    work_dir : Path
        Folder for the server's config, runtime and data folders and its log.
    env : dict, optional
        Extra environment variables of the server and so of its kernels.
    """

    def __init__(self, root_dir, work_dir, *, env=None):
        self.root_dir = Path(root_dir)
        self.work_dir = Path(work_dir)
        self.token = secrets.token_hex(16)
        self.port = None
        self.process = None
        self.log_path = self.work_dir / "jupyterlab.log"
        self.runtime_dir = self.work_dir / "runtime"
        self.env = dict(os.environ)
        self.env.update({
            "JUPYTER_CONFIG_DIR": str(self.work_dir / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_DATA_DIR": str(self.work_dir / "data"),
            "IPYTHONDIR": str(self.work_dir / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
        })
        self.env.pop("JUPYTER_PATH", None)
        self.env.update(env or {})

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "JupyterLab":
        """Start the server and wait until its API answers."""
        self._write_settings()
        self.port = _free_port()
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                   f"--port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
                   "--LabApp.news_url=None", "--ServerApp.open_browser=False",
                   # window.jupyterapp: error outputs look like stderr in the DOM, the model tells them apart
                   "--LabApp.expose_app_in_browser=True"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        log = open(self.log_path, "wb")
        # Own process group: stop() can end the server and anything it left behind at once.
        self.process = subprocess.Popen(command, cwd=self.root_dir, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode} at start:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {_START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut down every kernel and the server; kill whatever is left of them."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.shutdown_kernels()
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        finally:
            self._kill_leftover_kernels()
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ helpers

    def url(self, path="lab") -> str:
        """URL of `path` on this server, with the token."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def notebook_url(self, name) -> str:
        """URL that opens notebook `name` (relative to `root_dir`) alone, in a reset workspace."""
        return self.url(f"lab/tree/{name}") + "&reset"

    def shutdown_kernels(self) -> None:
        """Shut down every running kernel (and so end its session)."""
        for kernel in self._safe_list("/api/kernels"):
            self._safe_call("DELETE", f"/api/kernels/{kernel['id']}")

    def api(self, method, path, *, timeout=10):
        """Call the server's REST API; return the decoded JSON (None for no content)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernels(self) -> list:
        """The running kernels (REST API entries)."""
        return self.api("GET", "/api/kernels")

    def log_tail(self, chars=4000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def _write_settings(self) -> None:
        settings = self.work_dir / "config" / "lab" / "user-settings"
        for plugin, values in _LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        self.runtime_dir.mkdir(parents=True, exist_ok=True)

    def _safe_list(self, path) -> list:
        try:
            return self.api("GET", path) or []
        except (OSError, urllib.error.URLError, ValueError):
            return []

    def _safe_call(self, method, path) -> None:
        try:
            self.api(method, path, timeout=20)
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def _kill_leftover_kernels(self) -> None:
        """Kill kernels whose connection file lies in this server's runtime folder.

        Kernels run in their own sessions, so killing the server's group can miss
        them; the connection-file path names exactly the kernels this server started.
        """
        marker = str(self.runtime_dir).encode()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue


# ---------------------------------------------------------------- notebooks


def prepare_notebook(source, dest, parameters) -> Path:
    """Copy notebook `source` to `dest` with `parameters` set, as papermill would.

    A cell tagged ``injected-parameters`` assigning the values follows the
    ``parameters`` cell; the outputs of the copy are cleared.
    """
    import nbformat

    nb = nbformat.read(source, as_version=4)
    lines = [f"{name} = {value!r}" for name, value in parameters.items()]
    injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    nb.cells.insert(index + 1, injected)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    dest = Path(dest)
    nbformat.write(nb, dest)
    return dest


def lab_open_notebook(page, lab, name, *, timeout_s=90) -> None:
    """Open notebook `name` and wait until its kernel is idle."""
    page.goto(lab.notebook_url(name))
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=timeout_s * 1000)
    lab_wait_kernel_idle(page, timeout_s)


def lab_current_notebook(page) -> str | None:
    """The file name on the tab of the notebook shown, or None."""
    tab = page.locator(".jp-mod-current .lm-TabBar-tabLabel")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    return tab.first.inner_text().strip() if panel.count() and tab.count() else None


def lab_wait_kernel_idle(page, timeout_s=90) -> None:
    """Wait until the notebook's kernel is named and idle, or a dialog asks something."""
    page.wait_for_function(
        """() => {
            if (document.querySelector('.jp-Dialog')) return true;
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            const name = panel && panel.querySelector('.jp-Toolbar-kernelName');
            const status = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
            const shown = name ? name.textContent.trim() : '';
            return shown !== '' && shown !== 'No Kernel' && status !== null
                && status.getAttribute('data-status') === 'idle';
        }""",
        timeout=timeout_s * 1000,
        polling=250,
    )


def lab_run_all(page, *, timeout_s=180) -> None:
    """Run all cells from the Run menu; wait until every code cell has run or one failed.

    JupyterLab stops a run at the first error, leaving later cells unrun, so an error
    output ends the wait too (`lab_errors` then says what it is).
    """
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
            const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
            const errors = (""" + _ERROR_OUTPUTS_JS + """)() || [];
            return prompts.length > 0 && s && s.getAttribute('data-status') === 'idle'
                && (errors.length > 0 || prompts.every(p => /\\[\\d+\\]/.test(p.textContent)));
        }""",
        timeout=timeout_s * 1000,
        polling=250,
    )


def lab_errors(scope) -> list:
    """User-visible problems in the notebook shown: error outputs, and widget errors in `scope`.

    `scope` is the page or a locator inside it (such as one cell).
    """
    page = scope.page if hasattr(scope, "page") and not callable(scope.page) else scope
    errors = page.evaluate(_ERROR_OUTPUTS_JS)
    if errors is None:
        raise RuntimeError("no notebook is shown, or JupyterLab runs without expose_app_in_browser")
    problems = [f"error output: {error[-800:]}" for error in errors]
    text = scope.locator(".jp-OutputArea").all_inner_texts()
    for marker in WIDGET_ERROR_TEXTS:
        if any(marker in chunk for chunk in text):
            problems.append(f"the text {marker!r} is shown where a widget should be")
    return problems


# ---------------------------------------------------------------- the comparison widget


def widget_cell(page):
    """The notebook cell whose output holds a slider labelled ``budget`` (the comparison widget)."""
    return page.locator(".jp-CodeCell").filter(
        has=page.locator(".widget-slider", has=page.locator("label", has_text="budget")))


def _budget_slider(cell):
    return cell.locator(".widget-slider", has=cell.page.locator("label", has_text="budget"))


def move_budget(cell, key="ArrowRight") -> str:
    """Move the budget slider one step with the keyboard, the other way at either end.

    Returns the key pressed.
    """
    handle = _budget_slider(cell).locator(".noUi-handle")
    now, low, high = (handle.get_attribute(name) for name in ("aria-valuenow", "aria-valuemin", "aria-valuemax"))
    if key == "ArrowRight" and now is not None and now == high:
        key = "ArrowLeft"
    elif key == "ArrowLeft" and now is not None and now == low:
        key = "ArrowRight"
    handle.focus()
    handle.press(key)
    return key


def budget_readout(cell) -> str:
    """The value the budget slider shows."""
    return _budget_slider(cell).locator(".widget-readout").inner_text()


def widget_snapshot(cell) -> dict:
    """What the user sees of the widget's result: image sources and table text."""
    return cell.evaluate(
        """(cell) => {
            const area = cell.querySelector('.jp-OutputArea');
            return {
                images: [...area.querySelectorAll('img')].map(i => i.src),
                tables: [...area.querySelectorAll('table')].map(t => t.innerText).join('\\n---\\n'),
            };
        }"""
    )


def wait_for_new_output(cell, before, *, timeout_s=30) -> float:
    """Wait until both the images and the table text differ from `before`; return seconds waited.

    Raises
    ------
    AssertionError
        When they did not both change in time, saying what the user sees.
    """
    started = time.perf_counter()
    try:
        cell.page.wait_for_function(
            """([cell, before]) => {
                const area = cell.querySelector('.jp-OutputArea');
                const images = [...area.querySelectorAll('img')].map(i => i.src);
                const tables = [...area.querySelectorAll('table')].map(t => t.innerText).join('\\n---\\n');
                const complete = [...area.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0);
                return images.length > 0 && tables.length > 0 && complete
                    && images.join('|') !== before.images.join('|') && tables !== before.tables;
            }""",
            arg=[cell.element_handle(), before],
            timeout=timeout_s * 1000,
            polling="raf",
        )
    except Exception as exc:  # playwright's TimeoutError: say what the user sees instead
        now = widget_snapshot(cell)
        seen = []
        if now["images"] == before["images"]:
            seen.append("the figure did not change" if now["images"] else "no figure is shown")
        if now["tables"] == before["tables"]:
            seen.append("the table did not change" if now["tables"] else "no table is shown")
        text = cell.locator(".jp-Cell-outputArea").first.inner_text()[-600:]
        raise AssertionError(f"after {timeout_s} s, {' and '.join(seen) or 'the output is incomplete'}; "
                             f"the widget's output area shows:\n{text}") from exc
    return time.perf_counter() - started
