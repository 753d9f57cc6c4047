"""``report.md`` and ``report.html`` for a run folder, rebuilt from the study storage and the folder's files.

Figures are PNGs in ``figures/``, embedded in the HTML, so the HTML file stands alone. Beside it,
``interactive.html`` holds Optuna's plotly figures (``search.report.interactive``); both pages link to it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import optuna

from search.outputs import write_text
from search.report.interactive import INTERACTIVE, write_interactive
from search.report.sections import ANALYSIS_SECTIONS, study_sections

LINK = re.compile(r"\[([^\]]+)\]\(([\w.-]+\.(?:html|csv|json))\)")
"""A markdown link to a page in the run folder (``[interactive.html](interactive.html)``) inside a paragraph."""


def build_report(run_dir: Path, study: optuna.Study | None, term_names: list[str]) -> tuple[str, str]:
    """Render ``(markdown, html)`` and write figures into ``run_dir/figures``. Without a study (an
    ``analyze`` run) only the analysis sections are rendered."""
    figs_dir = run_dir / "figures"
    figs_dir.mkdir(parents=True, exist_ok=True)
    md: list[str] = [f"# steersearch report: {study.study_name if study is not None else run_dir.name}", ""]
    if study is not None and (run_dir / INTERACTIVE).exists():
        md += [f"Interactive figures (zoom, hover; work offline): [{INTERACTIVE}]({INTERACTIVE})", ""]
    if study is not None:
        md += study_sections(run_dir, study, term_names, figs_dir)
    for section in ANALYSIS_SECTIONS:
        md += section(run_dir, figs_dir)
    markdown = "\n".join(md) + "\n"
    return markdown, _html(markdown, figs_dir)


def _bold(text: str) -> str:
    """``**x**`` as ``<b>x</b>``, in paragraphs and table cells alike (a lone ``**`` stays as it is)."""
    while text.count("**") >= 2:
        text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
    return text


def _html(markdown: str, figs_dir: Path) -> str:
    """A small markdown subset (headings, bullets, tables, images, bold) rendered to standalone HTML."""
    out: list[str] = []
    table_rows: list[list[str]] = []

    def flush() -> None:
        if table_rows:
            head, *body = table_rows
            out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
            out.append("</tbody></table>")
            table_rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [_bold(html.escape(c.strip())) for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table_rows.append(cells)
            continue
        flush()
        if line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            data = base64.b64encode((figs_dir.parent / name).read_bytes()).decode()
            out.append(f'<img alt="figure" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            text = _bold(LINK.sub(r'<a href="\2">\1</a>', html.escape(line)))
            out.append(f"<p>{text}</p>")
    flush()
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        # a comparison has a dozen columns: a table wider than the page scrolls instead of being cut off
        "table{border-collapse:collapse;margin:1em 0;font-size:14px;display:block;overflow-x:auto;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}th{background:#f3f3f3}"
        "img{max-width:100%;margin:1em 0}h1{font-size:1.6em}"
    )
    head = f"<head><meta charset='utf-8'><title>steersearch report</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(out)}</body></html>\n"


def write_report(run_dir: Path, study: optuna.Study | None, term_names: list[str]) -> Path:
    """Write ``report.md``, ``report.html`` and (with a study) ``interactive.html`` into ``run_dir``; returns
    the static HTML's path."""
    if study is not None:
        write_interactive(run_dir, study, term_names)
    markdown, page = build_report(run_dir, study, term_names)
    write_text(run_dir / "report.md", markdown)
    write_text(run_dir / "report.html", page)
    return run_dir / "report.html"
