"""The explorer's HTML: an index page and one page per trace, self-contained (the data embedded as
JSON, the style and the plain-JavaScript script inline)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anchorflow.explorer.pages import CATEGORY_COLOURS, TracePage, rounded_number
from anchorflow.io import write_text


def _embed(data: Any) -> str:
    """JSON safe to put inside a ``<script>`` element."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.9em}td,th{border-bottom:1px solid #ddd;padding:2px 8px;
text-align:left;vertical-align:top}a{color:#1f5fa8}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;
z-index:2}
.sentence{cursor:default;border-bottom:3px solid transparent;padding:1px 1px;border-radius:2px}
.sorted .sentence{display:block;margin:2px 0}
.missing{background:repeating-linear-gradient(45deg,#eee,#eee 3px,#fff 3px,#fff 6px)}
.focus{outline:2px solid #000}
#tooltip{position:fixed;display:none;background:#fffbe6;border:1px solid #999;padding:6px 9px;
max-width:460px;font-size:.85em;z-index:5;pointer-events:none;box-shadow:0 2px 6px #0003}
.legend span{display:inline-block;margin-right:10px;font-size:.85em}
.swatch{display:inline-block;width:12px;height:12px;margin-right:3px;vertical-align:middle}
canvas{border:1px solid #ccc;image-rendering:pixelated}
.muted{color:#777}
"""


TRACE_SCRIPT = """
const data = JSON.parse(document.getElementById('page-data').textContent);
const tip = document.getElementById('tooltip');
const list = document.getElementById('sentences');
const measureSelect = document.getElementById('measure');
const sortSelect = document.getElementById('sort');
const fmt = v => v === null ? 'missing' : Number(v).toPrecision(3);
function showTip(html, event) {
  tip.innerHTML = html; tip.style.display = 'block';
  const x = Math.min(event.clientX + 14, window.innerWidth - 480);
  tip.style.left = x + 'px'; tip.style.top = (event.clientY + 14) + 'px';
}
function hideTip() { tip.style.display = 'none'; }
function escapeHtml(text) {
  return text.replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
}
const elements = data.sentences.map(sentence => {
  const span = document.createElement('span');
  span.className = 'sentence';
  span.dataset.index = sentence.index;
  span.textContent = sentence.text + ' ';
  span.style.borderBottomColor = data.colours[sentence.category] || '#999';
  span.addEventListener('mousemove', event => {
    const rows = data.measures.map(m =>
      `<tr><td>${m.label}</td><td>${fmt(m.values[sentence.index])}</td></tr>`).join('');
    const deps = sentence.depends_on.length ? sentence.depends_on.join(', ') : 'none';
    showTip(`<b>sentence ${sentence.index}</b> (chunk ${sentence.chunk_idx}, ` +
      `${sentence.category})<table>${rows}</table>depends on chunks: ${deps}`, event);
    for (const dep of sentence.depends_on) {
      const target = elements.find(e => data.sentences[e.dataset.index].chunk_idx === dep);
      if (target) target.classList.add('focus');
    }
  });
  span.addEventListener('mouseleave', () => {
    hideTip(); elements.forEach(e => e.classList.remove('focus'));
  });
  list.appendChild(span);
  return span;
});
function shade() {
  // Shaded by rank among the trace's values (skewed measures stay readable); missing is hatched.
  const measure = data.measures.find(m => m.key === measureSelect.value);
  const finite = measure.values.filter(v => v !== null).sort((a, b) => a - b);
  const rank = value => {
    let lo = 0, hi = finite.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (finite[mid] < value) lo = mid + 1; else hi = mid;
    }
    return finite.length > 1 ? lo / (finite.length - 1) : 0.5;
  };
  elements.forEach((span, index) => {
    const value = measure.values[index];
    span.classList.toggle('missing', value === null);
    if (value === null) { span.style.backgroundColor = ''; span.title = 'missing'; return; }
    span.style.backgroundColor = `rgba(230, 85, 13, ${(0.05 + 0.8 * rank(value)).toFixed(3)})`;
    span.title = '';
  });
  document.getElementById('scale').textContent = finite.length ?
    `${measure.label}, shaded by rank: ${fmt(finite[0])} (lightest) to ` +
    `${fmt(finite[finite.length - 1])} (darkest); ` +
    `${measure.values.length - finite.length} missing` : `${measure.label}: no values`;
}
function reorder() {
  const key = sortSelect.value;
  let order = data.sentences.map(s => s.index);
  if (key !== 'order') {
    const values = data.measures.find(m => m.key === key).values;
    order.sort((a, b) => (values[b] ?? -Infinity) - (values[a] ?? -Infinity) || a - b);
  }
  list.classList.toggle('sorted', key !== 'order');
  order.forEach(index => list.appendChild(elements[index]));
}
for (const m of data.measures) {
  measureSelect.add(new Option(m.label, m.key));
  sortSelect.add(new Option(m.label, m.key));
}
measureSelect.addEventListener('change', shade);
sortSelect.addEventListener('change', reorder);
shade();
if (data.matrix) {
  const canvas = document.getElementById('heatmap');
  const n = data.matrix.length, cell = Math.max(1, Math.floor(600 / n));
  canvas.width = canvas.height = n * cell;
  const context = canvas.getContext('2d');
  const values = data.matrix.flat().filter(v => v !== null);
  const low = Math.min(...values), high = Math.max(...values);
  data.matrix.forEach((row, i) => row.forEach((value, j) => {
    if (value === null) { context.fillStyle = '#f4f4f4'; }
    else {
      const level = high > low ? (value - low) / (high - low) : 0;
      const shade = Math.round(255 * (1 - level));
      context.fillStyle = `rgb(255, ${shade}, ${shade})`;
    }
    context.fillRect(j * cell, i * cell, cell, cell);
  }));
  canvas.addEventListener('mousemove', event => {
    const box = canvas.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left) / box.width * n);
    const i = Math.floor((event.clientY - box.top) / box.height * n);
    if (i < 0 || j < 0 || i >= n || j >= n) return hideTip();
    const text = k => escapeHtml(data.sentences[k].text.slice(0, 160));
    showTip(`suppressing <b>${j}</b>: ${text(j)}<br>effect on <b>${i}</b>: ${text(i)}` +
      `<br>log KL: ${fmt(data.matrix[i][j])}`, event);
  });
  canvas.addEventListener('mouseleave', hideTip);
}
const curveNames = Object.keys(data.curves);
if (curveNames.length) {
  const svg = document.getElementById('curves');
  const n = data.sentences.length, width = 900, height = 220, pad = 30;
  const all = curveNames.flatMap(h => data.curves[h]).filter(v => v !== null);
  const top = Math.max(...all, 1e-12);
  const palette = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const axis = height - pad;
  let markup = `<line x1="${pad}" y1="${axis}" x2="${width}" y2="${axis}" stroke="#999"/>`;
  curveNames.forEach((name, k) => {
    const points = data.curves[name].map((v, i) => v === null ? null :
      `${(pad + (width - pad) * i / Math.max(1, n - 1)).toFixed(1)},` +
      `${(height - pad - (height - 2 * pad) * v / top).toFixed(1)}`).filter(p => p);
    markup += `<polyline fill="none" stroke="${palette[k % palette.length]}" stroke-width="1.5" ` +
      `points="${points.join(' ')}"><title>${name}</title></polyline>`;
    markup += `<text x="${pad + 90 * k}" y="14" fill="${palette[k % palette.length]}" ` +
      `font-size="12">${name}</text>`;
  });
  markup += `<text x="${pad}" y="${height - 8}" font-size="11">sentence 0</text>` +
    `<text x="${width - 80}" y="${height - 8}" font-size="11">sentence ${n - 1}</text>`;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.innerHTML = markup;
}
document.body.dataset.rendered = performance.now().toFixed(1);
"""


def _legend() -> str:
    return "".join(
        f'<span><i class="swatch" style="background:{colour}"></i>{html.escape(name)}</span>'
        for name, colour in CATEGORY_COLOURS.items()
    )


PAGES_FOLDER = "traces"


def render_trace_page(page: TracePage, index_href: str = "../../index.html") -> str:
    """The HTML of one trace page (self-contained: data, style and script inline)."""
    title = f"{page.trace} ({page.model})"
    outcome = "correct" if page.correct else "incorrect"
    sections = [
        f'<p><a href="{index_href}">all traces</a></p>',
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>Problem.</b> {html.escape(page.problem)}</p>",
        f'<p class="muted">{outcome} trace, {len(page.sentences)} sentences'
        + (f", {page.n_tokens} tokens" if page.n_tokens else "")
        + ".</p>",
        '<div class="controls">shade by <select id="measure"></select> '
        'sort by <select id="sort"><option value="order">trace order</option></select> '
        '<span id="scale" class="muted"></span><div class="legend">' + _legend() + "</div></div>",
        '<div id="sentences"></div>',
    ]
    if page.matrix is not None:
        sections += [
            "<h2>Suppression matrix</h2>",
            '<p class="muted">log KL of sentence i (row) when sentence j (column) is suppressed; '
            "hover a cell for both sentences.</p>",
            '<canvas id="heatmap"></canvas>',
        ]
    if page.curves:
        sections += [
            "<h2>Vertical-score curves of the top receiver heads</h2>",
            '<svg id="curves" width="100%" role="img"></svg>',
        ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n{body}\n"
        '<div id="tooltip"></div>\n'
        f'<script id="page-data" type="application/json">{_embed(page.as_json())}</script>\n'
        f"<script>{TRACE_SCRIPT}</script>\n</body></html>\n"
    )


@dataclass(frozen=True)
class IndexEntry:
    """One row of the index: a trace page and its summary."""

    page: TracePage
    href: str


def render_index(
    run: str,
    entries: Sequence[IndexEntry],
    heads: Mapping[str, Sequence[Mapping[str, Any]]],
    links: Sequence[tuple[str, str]],
) -> str:
    """The index page: every trace, each model's receiver heads, links to figures and tables.
    ``heads[model]`` rows have ``layer``, ``head`` and ``mean_kurtosis``; ``links`` are
    ``(label, href)``."""
    rows = []
    for entry in entries:
        page = entry.page
        anchors = "; ".join(
            f"{index}: {html.escape(page.sentences[index][:70])}" for index in page.top_anchors()
        )
        rows.append(
            f'<tr><td><a href="{entry.href}">{html.escape(page.trace)}</a></td>'
            f"<td>{html.escape(page.trace.split('_')[0])}</td>"
            f"<td>{'correct' if page.correct else 'incorrect'}</td>"
            f"<td>{html.escape(page.model)}</td><td>{len(page.sentences)}</td>"
            f"<td>{page.n_tokens if page.n_tokens else 'missing'}</td><td>{anchors}</td></tr>"
        )
    head_sections = []
    for model, table in heads.items():
        head_rows = "".join(
            f"<tr><td>{rank}</td><td>{row['layer']}</td><td>{row['head']}</td>"
            f"<td>{rounded_number(row['mean_kurtosis'])}</td></tr>"
            for rank, row in enumerate(table, 1)
        )
        head_sections.append(
            f"<h2>Receiver heads of {html.escape(model)}</h2><table><tr><th>rank</th>"
            f"<th>layer</th><th>head</th><th>mean kurtosis</th></tr>{head_rows}</table>"
        )
    link_items = "".join(
        f'<li><a href="{href}">{html.escape(label)}</a></li>' for label, href in links
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>anchorflow explorer: {html.escape(run)}</title><style>{STYLE}</style></head>"
        f"<body><h1>anchorflow explorer: run {html.escape(run)}</h1>"
        "<h2>Traces</h2><table><tr><th>trace</th><th>problem</th><th>outcome</th><th>model</th>"
        "<th>sentences</th><th>tokens</th><th>top anchors (receiver-head score)</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(head_sections)
        + f"<h2>Figures and tables</h2><ul>{link_items}</ul></body></html>\n"
    )


def write_explorer(
    folder: str | Path,
    run: str,
    pages: Sequence[TracePage],
    heads: Mapping[str, Sequence[Mapping[str, Any]]],
    links: Sequence[tuple[str, str]],
) -> list[Path]:
    """Write ``index.html`` and ``traces/{model}/{trace}.html`` under ``folder``; return the
    paths, the index first."""
    folder = Path(folder)
    written, entries = [], []
    for page in pages:
        href = f"{PAGES_FOLDER}/{page.model}/{page.trace}.html"
        path = folder / href
        write_text(path, render_trace_page(page))
        written.append(path)
        entries.append(IndexEntry(page, href))
    index = folder / "index.html"
    write_text(index, render_index(run, entries, heads, links))
    return [index, *written]
