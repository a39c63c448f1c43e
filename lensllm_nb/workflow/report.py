"""Shareable HTML reports of executed notebooks.

Each executed notebook becomes one self-contained HTML file rendered with the
``lensllm_report`` nbconvert template (``templates/lensllm_report``): a title block
with the run's status and parameters, code hidden, images embedded, nothing loaded
from the network; ``write_index`` links the reports.

Details and derivations: docs/METHODS.md, section ``lensllm_nb.workflow.report``.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from ..errors import ConfigError
from ..utils.safe_output import mask_secrets, write_inside
from .recommendation import grid_answer

__all__ = [
    "DURATIONS_NOTE",
    "TEMPLATE_NAME",
    "find_templates",
    "index_answer",
    "notebook_status",
    "render_report",
    "render_reports",
    "static_widgets",
    "write_index",
]

TEMPLATE_NAME = "lensllm_report"

# Cells with this tag are dropped from reports (setup cells, scratch work).
_REMOVE_TAGS = ("remove-cell", "remove_cell")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# The text/plain of a widget that has no text of its own: "HBox(children=(...))".
_WIDGET_REPR = re.compile(r"^[A-Za-z_][\w.]*\(")


def find_templates(path=None) -> Path:
    """Return the folder that holds the ``lensllm_report`` template.

    Parameters
    ----------
    path : str or Path, optional
        A folder containing ``lensllm_report/conf.json``. Default: the environment
        variable ``LENSLLM_NB_TEMPLATES``, else the ``templates/`` folder of this
        repository.

    Returns
    -------
    Path
        The absolute template base folder.

    Raises
    ------
    ConfigError
        When the folder does not contain ``lensllm_report/conf.json``.
    """
    if path is None:
        path = os.environ.get("LENSLLM_NB_TEMPLATES") or Path(__file__).resolve().parents[2] / "templates"
    base = Path(path).expanduser().resolve()
    if not (base / TEMPLATE_NAME / "conf.json").is_file():
        raise ConfigError(
            f"`templates` = {str(base)!r} holds no `{TEMPLATE_NAME}/conf.json`; pass the "
            "`templates/` folder of a lensllm-nb checkout or set LENSLLM_NB_TEMPLATES to it"
        )
    return base


def notebook_status(nb) -> tuple[str, str | None]:
    """Return ``(status, error)`` of an executed notebook.

    The batch runner records its verdict in ``nb.metadata.lensllm_nb``; for other
    notebooks the first error output decides.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        An executed notebook.

    Returns
    -------
    tuple of (str, str or None)
        ``"ok"``, ``"failed"`` or ``"timeout"``, and the one-line error if any.
    """
    run = nb.metadata.get("lensllm_nb", {})
    if run.get("status"):
        return run["status"], run.get("error")
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return "failed", f"{output.get('ename')}: {output.get('evalue')}"
    return "ok", None


def render_report(notebook, output=None, *, title=None, templates=None, out=None) -> Path:
    """Render one executed notebook to a self-contained HTML report.

    Parameters
    ----------
    notebook : str or Path
        The executed ``.ipynb`` file (a failed one renders too, with its error).
    output : str or Path, optional
        The HTML file to write. Default: next to the notebook, suffix ``.html``.
    title : str, optional
        The report title. Default: ``nb.metadata.lensllm_nb.title`` or the file stem.
    templates : str or Path, optional
        The template base folder (see `find_templates`).
    out : str or Path, optional
        The output folder the report stays inside (written through no link, see
        `lensllm_nb.utils.safe_output.open_inside`). Default: the folder of `output`.

    Returns
    -------
    Path
        The written HTML file.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    notebook = Path(notebook)
    if not notebook.is_file():
        raise ConfigError(
            f"`notebook` = {str(notebook)!r} does not exist; pass the path of an executed .ipynb file"
        )
    output = Path(output) if output is not None else notebook.with_suffix(".html")
    # The copy rendered holds no secret: a traceback or a print may quote a store URL.
    nb = nbformat.from_dict(mask_secrets(_read_notebook(notebook)))
    if title is not None:
        nb.metadata.setdefault("lensllm_nb", {})["title"] = title
    replaced = static_widgets(nb)
    if replaced:
        nb.metadata.setdefault("lensllm_nb", {})["widgets_replaced"] = replaced

    exporter = HTMLExporter(
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(find_templates(templates))],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    remover = TagRemovePreprocessor(remove_cell_tags=set(_REMOVE_TAGS), enabled=True)
    exporter.register_preprocessor(remover, enabled=True)
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": title or notebook.stem, "path": str(notebook.parent)}}
    )
    if out is None:
        output.parent.mkdir(parents=True, exist_ok=True)
    write_inside(output.parent if out is None else out, output.absolute(), body)
    return output


def _read_notebook(path):
    """Read a notebook, or raise `ConfigError` for a file that is not one."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises NotJSONError, ValidationError, TypeError, ...
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(f"`notebook` = {str(path)!r} is not a valid .ipynb file ({type(exc).__name__}: "
                          f"{detail}); pass an executed Jupyter notebook") from None


def static_widgets(nb) -> int:
    """Replace widget outputs of `nb` by their static text, in place; return how many.

    A widget view needs a widget manager script (from a CDN) to draw anything, so
    a report keeps only the view's ``text/plain`` when it says something (a tqdm
    bar's final line, such as ``gpt2 × zoo: 100% 6/6``) and drops it when it is the
    bare widget repr (``HBox(children=...)``). The saved widget state goes too.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        A notebook read for rendering (not the file on disk).

    Returns
    -------
    int
        The number of widget outputs replaced or dropped.
    """
    from nbformat.v4 import new_output

    nb.metadata.pop("widgets", None)
    replaced = 0
    for cell in nb.cells:
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if _WIDGET_VIEW not in data:
                outputs.append(output)
                continue
            replaced += 1
            text = "".join(data.get("text/plain", ""))
            if text.strip() and not _WIDGET_REPR.match(text.strip()):
                outputs.append(new_output("stream", name="stdout", text=text.rstrip() + "\n"))
        if "outputs" in cell:
            cell["outputs"] = outputs
    return replaced


def render_reports(notebooks, out, *, templates=None, title="lensllm-nb reports") -> list[dict]:
    """Render several executed notebooks into `out` and write its ``index.html``.

    Parameters
    ----------
    notebooks : iterable of str or Path
        Executed notebooks.
    out : str or Path
        The folder for ``<stem>.html`` files and ``index.html``.
    templates : str or Path, optional
        The template base folder (see `find_templates`).
    title : str
        The title of the index page.

    Returns
    -------
    list of dict
        One entry per notebook: ``name``, ``status``, ``error``, ``notebook``, ``report``.
    """
    out = Path(out).resolve()
    entries = []
    stems = [Path(nb).stem for nb in notebooks]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise ConfigError(
            f"`notebooks` contains several files named {duplicates}; their reports would "
            "overwrite each other in `out`: render them into separate folders"
        )
    for path in notebooks:
        path = Path(path).resolve()
        report = render_report(path, out / f"{path.stem}.html", templates=templates, out=out)
        status, error = notebook_status(_read_notebook(path))
        entries.append({"name": path.stem, "status": status, "error": error,
                        "notebook": str(path), "report": str(report)})
    write_index(entries, out / "index.html", title=title)
    return entries


def write_index(entries, path, *, title="lensllm-nb reports", note=None, answer=None) -> Path:
    """Write an ``index.html`` that links reports with their status, led by the answer.

    Parameters
    ----------
    entries : list of dict
        Each with ``name``, ``status`` and optionally ``report``, ``notebook``,
        ``seconds`` (the job's wall time), ``cells_seconds`` (the notebook's own), ``error``,
        ``parameters`` (a dict shown under the name) and ``note`` (a line shown under the name).
    path : str or Path
        The HTML file to write; links are relative to its folder.
    title : str
        The page title.
    note : str, optional
        A line shown under the title (for example where the run record is).
    answer : lensllm_nb.workflow.recommendation.SelectionAnswer or str, optional
        The grid's answer, shown first; a string is shown as the reason there is none.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    n_failed = sum(entry["status"] != "ok" for entry in entries)
    rows = "\n".join(_index_row(entry, path.parent) for entry in entries)
    summary = f"{len(entries)} notebooks, {n_failed} failed" if n_failed else f"{len(entries)} notebooks, all ok"
    note_html = f"<p>{html.escape(note)}</p>" if note else ""
    if isinstance(answer, str):
        answer_html = f'<p class="error">No answer: {html.escape(answer)}</p>'
    else:
        answer_html = answer.to_html() if answer is not None else ""
    page = _INDEX_PAGE.format(title=html.escape(title), summary=summary, note=note_html, rows=rows,
                              answer=answer_html, durations=DURATIONS_NOTE)
    write_inside(path.parent, path.name, page)  # through no link planted at the index
    return path


def index_answer(results):
    """The answer an index leads with: a `SelectionAnswer`, a reason it failed, or None.

    Parameters
    ----------
    results : list of dict
        Batch results (see `lensllm_nb.workflow.recommendation.grid_answer`).

    Returns
    -------
    lensllm_nb.workflow.recommendation.SelectionAnswer or str or None
        None when the grid selects no model; a one-line reason when its data
        cannot answer (the index is written either way).
    """
    try:
        return grid_answer(results)
    except Exception as exc:  # the index lists the notebooks whatever went wrong with the answer
        return f"{type(exc).__name__}: {exc}"


def _relative_link(target, folder) -> str:
    """Return an href for `target` relative to `folder` (URL-style separators)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(folder).resolve())).as_posix()


def _index_row(entry, folder) -> str:
    """Return one table row of the index page."""
    name = html.escape(entry["name"])
    if entry.get("report"):
        name = f'<a href="{html.escape(_relative_link(entry["report"], folder))}">{name}</a>'
    parameters = entry.get("parameters") or {}
    if parameters:
        shown = ", ".join(f"{key}={value}" for key, value in parameters.items())
        name += f'<div class="params">{html.escape(shown)}</div>'
    notebook = ""
    if entry.get("notebook"):
        notebook = f'<a href="{html.escape(_relative_link(entry["notebook"], folder))}">ipynb</a>'
    seconds, cells = (f"{v:.1f}" if isinstance(v, (int, float)) else ""
                      for v in (entry.get("seconds"), entry.get("cells_seconds")))
    status = html.escape(entry["status"])
    error = html.escape(entry.get("error") or "")
    if entry.get("note"):
        name += f'<div class="params">{html.escape(entry["note"])}</div>'
    return (f'<tr><td>{name}</td><td><span class="status {status}">{status}</span></td>'
            f"<td>{cells}</td><td>{seconds}</td><td>{notebook}</td><td class=\"error\">{error}</td></tr>")


# One wording of the two durations, for the index and the command line.
DURATIONS_NOTE = ("cells s: the notebook's own execution time (as its report says); job s: the job's wall "
                  "time, with process and kernel start and the report.")

_INDEX_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
/* Narrow screens: the page never scrolls sideways; a table too wide scrolls in its own box. */
*, *::before, *::after {{ box-sizing: border-box; }}
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222;
  overflow-wrap: break-word; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ddd; padding: 0.35em 0.7em; text-align: left; vertical-align: top; }}
th {{ background: #f5f5f5; }}
.table-scroll {{ max-width: 100%; overflow-x: auto; }}
.status {{ padding: 0.1em 0.6em; border-radius: 0.8em; color: #fff; font-weight: 600; white-space: nowrap; }}
.status.ok {{ background: #2e7d32; }}
.status.failed, .status.timeout {{ background: #c62828; }}
.status.interrupted, .status.cancelled {{ background: #ef6c00; }}
.params {{ color: #666; font-size: 0.85em; font-family: monospace; }}
.error {{ color: #c62828; font-family: monospace; font-size: 0.85em; max-width: 40em; }}
.answer {{ border: 2px solid #2e7d32; border-radius: 0.4em; padding: 0.2em 1.2em 1em 1.2em;
  margin: 1em 0 2em 0; max-width: 62em; }}
.answer h2 {{ margin: 0.6em 0 0.3em 0; }}
.answer-lead {{ font-size: 1.15em; }}
.answer-figure {{ max-width: 100%; overflow-x: auto; margin: 0.8em 0; }}
.answer-figure img {{ display: block; max-width: 100%; min-width: 300px; height: auto; }}
.answer-check {{ background: #f5f7fa; border-left: 4px solid #90a4ae; padding: 0.4em 0.8em; }}
@media (max-width: 640px) {{
  body {{ margin: 1em 0.7em; }}
  .answer {{ padding: 0.2em 0.7em 0.8em 0.7em; }}
  th, td {{ padding: 0.3em 0.45em; }}
}}
</style>
</head>
<body>
<h1>{title}</h1>
{answer}
<h2>Notebooks</h2>
<p>{summary}</p>
{note}
<div class="table-scroll"><table class="notebooks-table">
<tr><th>notebook</th><th>status</th><th>cells s</th><th>job s</th><th>executed</th><th>error</th></tr>
{rows}
</table></div>
<p class="params">{durations}</p>
</body>
</html>
"""
