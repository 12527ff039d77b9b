#!/usr/bin/env python
"""Page-layout audit of a built Jupyter Book (HTML), in headless Chromium.

Usage::

    .venv/bin/python tools/page_audit.py _build/html [--out DIR] [--width 1300]

For every page (``index.html`` and the pages in its sub-folders, except the
Sphinx-generated index/search pages), at a window ``--width`` CSS px wide
(device scale 1), after MathJax has typeset the page, it measures

1. overflow: elements of the article (``main .bd-article``) whose content is
   wider than their box (they scroll sideways or are clipped: tables and their
   scroll wrappers, code cells, display math, images), and elements that stick
   out of the article column; for tables, which columns are out of view;
2. code cells whose input is visible (not in a closed ``<details>``, not
   removed): lines shown above the first figure, and cells longer than
   ``--max-lines`` (5) visible lines anywhere;
3. figures: natural vs displayed size, displayed width / column width,
   retina-readiness (natural / displayed >= 1.5), numbered caption, and from the
   PNG's dpi the CSS px that one matplotlib point becomes (10 pt tick labels are
   ``10 * px_per_pt`` px high on screen);
4. error/warning outputs (stderr, tracebacks, "Warning"/"Error" in outputs),
   MathJax errors, math left untypeset, and literal leftovers in rendered text
   (``$``, ``\\frac``, ``_{``, ``nan``, ``None``, ``{cite}``, ``??`` ...), headings
   numbered twice, empty outputs and Python reprs;
5. full-page screenshots cut into segments ``--width`` x ``--seg-height``
   (1600), ``<out>/<page>_NN.png``, and each figure with its caption at 1:1,
   ``<out>/<page>_figN.png``; ``report.md`` says which segment shows which
   figure and table,

and writes ``<out>/report.json`` and a readable ``<out>/report.md``.

Also checked: math whose ink is cut off by its box (the page is rendered a
second time with the math boxes unclipped and the pixels compared), table
cells whose texts touch, the pandas default index, raw snake_case column
names, truncated cells, numbers in e-notation broken across lines, punctuation
wrapped away from inline math, underlined links hiding "_", Python reprs
printed as output.  Not checked (look at the screenshots): legends covering
data, curves hidden under others, overlapping tick labels.  In the
screenshots the viewport is as tall as the page, so the "Contents" sidebar
highlights a section further down than the one at the top; that is an
artefact of the capture, not of the book.

Needs: a Chromium/Chrome binary (``--chrome``, default: $CHROME, then
chromium / chromium-browser / google-chrome on PATH), the Python packages
``websocket-client`` and ``Pillow``.  It talks to Chromium over the DevTools
protocol; no chromedriver/selenium needed.  Runs headless, no display needed.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

try:
    import websocket  # websocket-client
except ImportError:  # pragma: no cover
    sys.exit("page_audit: needs the 'websocket-client' package (pip install websocket-client)")
try:
    from PIL import Image
except ImportError:  # pragma: no cover
    sys.exit("page_audit: needs the 'Pillow' package (pip install Pillow)")

SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html", "prf-prf.html"}


# --------------------------------------------------------------------------
# Chromium over the DevTools protocol
# --------------------------------------------------------------------------
class Chrome:
    def __init__(self, binary: str, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="page_audit_chrome_")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking",
            "--force-device-scale-factor=1", "--allow-file-access-from-files",
            f"--window-size={width},{height}",
            f"--remote-debugging-port={self.port}", "--remote-allow-origins=*",
            f"--user-data-dir={self.profile}", "about:blank",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/json/version", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"Chromium exited at start ({binary})")
                time.sleep(0.1)
        else:
            raise RuntimeError("Chromium did not open its DevTools port")
        req = urllib.request.Request(base + "/json/new?about:blank", method="PUT")
        target = json.loads(urllib.request.urlopen(req, timeout=10).read())
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=120,
                                             suppress_origin=True)
        self._id = 0

    def send(self, method: str, **params):
        self._id += 1
        msg_id = self._id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str, await_promise: bool = False):
        res = self.send("Runtime.evaluate", expression=expr, returnByValue=True,
                        awaitPromise=await_promise)
        if "exceptionDetails" in res:
            raise RuntimeError("JS error: " + json.dumps(res["exceptionDetails"])[:2000])
        return res.get("result", {}).get("value")

    def viewport(self, width: int, height: int):
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


# --------------------------------------------------------------------------
# In-page JavaScript
# --------------------------------------------------------------------------
WAIT_JS = r"""
(async () => {
  const t0 = Date.now();
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  while (document.readyState !== 'complete' && Date.now() - t0 < 60000) await sleep(50);
  let mathjax = 'none';
  while (Date.now() - t0 < 60000) {
    const hasMath = document.querySelector('.math, mjx-container, script[type^="math/tex"]');
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; } catch (e) { mathjax = 'error: ' + e; }
      if (!document.querySelector('.MathJax_Processing')) { if (mathjax === 'none') mathjax = 'done'; break; }
    } else if (!hasMath && Date.now() - t0 > 1500) break;
    await sleep(100);
  }
  if (mathjax === 'none' && document.querySelector('.math')) mathjax = 'timeout (MathJax never finished)';
  try { await document.fonts.ready; } catch (e) {}
  await Promise.all([...document.images].map(i => i.complete ? null :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 10000); })));
  await sleep(200);
  return JSON.stringify({ms: Date.now() - t0, mathjax});
})()
"""

MEASURE_JS = r"""
(() => {
const MAXLINES = __MAXLINES__;
const art = document.querySelector('main .bd-article') || document.querySelector('.bd-article')
         || document.querySelector('main') || document.body;
const acs = getComputedStyle(art);
const ar = art.getBoundingClientRect();
const colLeft = ar.left + parseFloat(acs.paddingLeft), colRight = ar.right - parseFloat(acs.paddingRight);
const colW = colRight - colLeft;
const Y = el => Math.round(el.getBoundingClientRect().top + window.scrollY);
const Yb = el => Math.round(el.getBoundingClientRect().bottom + window.scrollY);
const clean = s => (s || '').replace(/[#¶]\s*$/, '').replace(/\s+/g, ' ').trim();
const snip = (s, n = 90) => { s = clean(s); return s.length > n ? s.slice(0, n - 1) + '…' : s; };
const heads = [...art.querySelectorAll('h1,h2,h3,h4,h5,h6')];
function section(el) {
  let h = null;
  for (const x of heads) { if (x === el || (x.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING)) h = x; else break; }
  return h ? snip(h.textContent, 70) : '';
}
function cellSource(el) {
  const cell = el.closest('div.cell');
  if (!cell) return '';
  const pre = cell.querySelector('.cell_input pre');
  if (!pre) return '';
  const lines = pre.textContent.split('\n').map(s => s.trim()).filter(s => s && !s.startsWith('#'));
  return lines.length ? snip(lines[0], 70) : '';
}
function context(el) {
  const fig = el.closest('figure');
  if (fig && fig.querySelector('figcaption')) return 'figure: ' + snip(fig.querySelector('figcaption').textContent, 80);
  const tbl = el.tagName === 'TABLE' ? el : (el.closest('table') || el.querySelector('table'));
  if (tbl && tbl.caption) return 'table: ' + snip(tbl.caption.textContent, 80);
  const src = cellSource(el);
  if (src) return 'cell: ' + src;
  return '';
}
function desc(el) {
  let s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  const cls = [...el.classList].slice(0, 4);
  if (cls.length) s += '.' + cls.join('.');
  return s;
}
function kind(el) {
  const t = el.tagName;
  if (t.startsWith('MJX') || el.closest('mjx-container') || el.classList.contains('math') || el.querySelector('mjx-container'))
    return 'math';
  if (t === 'TABLE' || el.closest('table') || el.querySelector('table')) return 'table';
  if ((t === 'PRE' || el.querySelector('pre')) && el.closest('.cell_output')) return 'output text';
  if (t === 'PRE' || el.closest('pre') || el.querySelector('pre') || el.classList.contains('highlight')) return 'code';
  if (t === 'IMG' || t === 'SVG' || t === 'FIGURE' || el.querySelector('img,svg')) return 'image';
  return 'other';
}
function tableColumns(tbl, visRight) {
  // header cells (or first-row cells) whose right edge is beyond visRight
  let row = tbl.querySelector('thead tr:last-child') || tbl.querySelector('tr');
  if (!row) return [];
  const out = [];
  for (const c of row.children) {
    const r = c.getBoundingClientRect();
    if (r.right > visRight + 1) out.push({text: snip(c.textContent, 40) || '(index)', px_beyond: Math.round(r.right - visRight),
                                          hidden_entirely: r.left >= visRight});
  }
  return out;
}
const SKIP_SPILL = '.headerlink, mjx-assistive-mml, .copybtn, .toggle-button, script, style, summary .admonition-title';
const visible = el => el.getClientRects().length > 0 && !el.closest('details:not([open])');
const overflow = [];
const scrollers = new Set();
// 1a. containers with hidden horizontal content (they scroll sideways or clip)
const all = [art, ...art.querySelectorAll('*')];
for (const el of all) {
  if (el.matches('mjx-assistive-mml, script, style, .math') || el.closest('mjx-container')) continue;  // math: see 1c
  if (el.getClientRects().length === 0 || (el.closest('details:not([open])') && !el.closest('summary'))) continue;  // hidden
  const ox = getComputedStyle(el).overflowX;
  if (ox === 'visible') continue;
  const sw = el.scrollWidth, cw = el.clientWidth;
  if (cw > 0 && sw > cw + 1) {
    scrollers.add(el);
    const r = el.getBoundingClientRect();
    const f = {how: (ox === 'hidden' || ox === 'clip') ? 'clipped' : 'scrolls sideways', kind: kind(el), element: desc(el),
      snippet: snip(el.textContent), scrollWidth: sw, clientWidth: cw, excess_px: sw - cw,
      column_width: Math.round(colW), section: section(el), context: context(el), y: Y(el), y_bottom: Yb(el)};
    const tbl = el.tagName === 'TABLE' ? el : el.querySelector('table');
    if (tbl) f.columns_out_of_view = tableColumns(tbl, r.left + el.clientLeft + cw);
    const pre = el.tagName === 'PRE' ? el : (!tbl && el.querySelector('pre'));
    if (pre) { const ls = pre.textContent.split('\n'); const lg = ls.reduce((a, x) => x.length > a.length ? x : a, '');
               f.longest_line = lg.trim().slice(0, 80); f.longest_chars = lg.length; f.lines_too_long = ls.filter(x => x.length > 0.9 * lg.length * cw / sw).length; }
    overflow.push(f);
  }
}
// ancestors of the article (whole article / page scrolling sideways)
for (let el = art.parentElement; el; el = el.parentElement) {
  const ox = getComputedStyle(el).overflowX;
  if (el !== document.documentElement && el !== document.body && ox === 'visible') continue;
  if (el.scrollWidth > el.clientWidth + 1)
    overflow.push({how: 'page scrolls sideways', kind: 'page', element: desc(el), snippet: '', scrollWidth: el.scrollWidth,
      clientWidth: el.clientWidth, excess_px: el.scrollWidth - el.clientWidth, column_width: Math.round(colW), section: '', context: '', y: 0, y_bottom: 0});
}
// 1b. elements sticking out of the article column (outermost only, not inside a scroller)
function insideScroller(el) { for (let p = el.parentElement; p && p !== art.parentElement; p = p.parentElement) if (scrollers.has(p)) return true; return false; }
function spills(el) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return 0;
  return Math.max(r.right - colRight, colLeft - r.left);
}
for (const el of art.querySelectorAll('*')) {
  if (el.matches(SKIP_SPILL) || el.closest('mjx-assistive-mml, mjx-container')) continue;  // math: see 1c
  if (el.closest('details:not([open])') && !el.closest('summary')) continue;  // hidden
  const s = spills(el);
  if (s <= 1.5) continue;
  if (el.parentElement && el.parentElement !== art && spills(el.parentElement) > 1.5) continue;
  if (insideScroller(el)) continue;
  const pos = getComputedStyle(el).position;
  if (pos === 'fixed') continue;
  const r = el.getBoundingClientRect();
  const f = {how: 'sticks out of the column', kind: kind(el), element: desc(el), snippet: snip(el.textContent),
    box_width: Math.round(r.width), column_width: Math.round(colW), excess_px: Math.round(s), section: section(el),
    context: context(el), y: Y(el), y_bottom: Yb(el),
    margin_element: !!el.closest('.margin, aside, .sidebar, .full-width')};
  const tbl = el.tagName === 'TABLE' ? el : el.querySelector('table');
  if (tbl) f.columns_out_of_view = tableColumns(tbl, colRight);
  overflow.push(f);
}
// 1c. math: the typeset formula (mjx-math) wider than the box that shows it
//     display math: div.math > mjx-container (overflow auto: scrolls); inline: span.math (overflow hidden: clipped)
const math = [];
for (const mc of art.querySelectorAll('mjx-container')) {
  const m = mc.querySelector(':scope > mjx-math');
  if (!m || mc.getClientRects().length === 0) continue;
  const display = mc.hasAttribute('display') && mc.getAttribute('display') !== 'false';
  const mr = m.getBoundingClientRect();
  const box = display ? mc : (mc.closest('span.math') || mc);
  const br = box.getBoundingClientRect();
  const visW = display ? box.clientWidth : br.width;
  const cut = Math.max(mr.right - (br.left + visW), br.left - mr.left, mr.right - colRight);
  const tex = (mc.parentElement && mc.parentElement.textContent || '');
  const aria = mc.querySelector('mjx-assistive-mml');
  const rec = {display, width: Math.round(mr.width), box_width: Math.round(visW), excess_px: Math.round(cut),
    overflows: cut > 1.5, how: display ? 'scrolls sideways' : 'clipped',
    text: snip(aria ? aria.textContent : tex, 60), section: section(mc), context: context(mc), y: Y(mc), y_bottom: Yb(mc)};
  if (display || rec.overflows) math.push(rec);
  if (rec.overflows) overflow.push({how: rec.how, kind: display ? 'display math' : 'inline math', element: desc(mc.parentElement || mc),
    snippet: rec.text, scrollWidth: Math.round(mr.width), clientWidth: Math.round(visW), excess_px: rec.excess_px,
    column_width: Math.round(colW), section: rec.section, context: rec.context, y: rec.y, y_bottom: rec.y_bottom});
}
// 2. code cells
const firstFig = art.querySelector('figure, img');
const firstFigY = firstFig ? Y(firstFig) : null;
const before = el => !firstFig || (el.compareDocumentPosition(firstFig) & Node.DOCUMENT_POSITION_FOLLOWING);
const cells = [];
for (const cell of art.querySelectorAll('div.cell')) {
  const inp = cell.querySelector('.cell_input');
  let state = 'removed', lines = 0, first = '';
  if (inp) {
    const pre = inp.querySelector('pre');
    const text = pre ? pre.textContent.replace(/\n+$/, '') : '';
    lines = text ? text.split('\n').length : 0;
    first = snip(text.split('\n')[0] || '', 70);
    const det = inp.closest('details');
    const r = inp.getBoundingClientRect();
    state = (det && !det.open) || r.height === 0 ? 'collapsed' : 'visible';
  }
  cells.push({state, lines, first_line: first, tags: [...cell.classList].filter(c => c.startsWith('tag_')).map(c => c.slice(4)),
              before_first_figure: !!before(cell), section: section(cell), y: Y(cell)});
}
const visCells = cells.filter(c => c.state === 'visible');
// code blocks that are not notebook cells (literal blocks in markdown)
const blocks = [];
for (const hl of art.querySelectorAll('div[class*="highlight-"]')) {
  if (hl.closest('div.cell') || hl.closest('.cell_output')) continue;
  const pre = hl.querySelector('pre'); if (!pre) continue;
  const r = hl.getBoundingClientRect(); if (r.height === 0) continue;
  const text = pre.textContent.replace(/\n+$/, '');
  blocks.push({lines: text.split('\n').length, first_line: snip(text.split('\n')[0], 70), before_first_figure: !!before(hl),
               section: section(hl), y: Y(hl)});
}
const code = {
  first_figure_y: firstFigY,
  visible_cells: visCells.length, collapsed_cells: cells.filter(c => c.state === 'collapsed').length,
  removed_inputs: cells.filter(c => c.state === 'removed').length,
  visible_lines_before_first_figure: visCells.filter(c => c.before_first_figure).reduce((a, c) => a + c.lines, 0),
  visible_cells_before_first_figure: visCells.filter(c => c.before_first_figure).map(c => ({lines: c.lines, first_line: c.first_line, section: c.section, y: c.y})),
  long_visible_cells: visCells.filter(c => c.lines > MAXLINES).map(c => ({lines: c.lines, first_line: c.first_line, section: c.section, y: c.y})),
  code_blocks_not_cells: blocks,
};
// 3. figures
const figures = [];
let fign = 0;
for (const img of art.querySelectorAll('img')) {
  const r = img.getBoundingClientRect();
  const fig = img.closest('figure');
  const cap = fig ? fig.querySelector('figcaption') : null;
  const num = cap ? cap.querySelector('.caption-number') : null;
  const capText = cap ? clean(cap.textContent) : '';
  figures.push({index: ++fign, src: img.currentSrc || img.src, natural_width: img.naturalWidth, natural_height: img.naturalHeight,
    displayed_width: Math.round(r.width), displayed_height: Math.round(r.height),
    width_over_column: +(r.width / colW).toFixed(3),
    natural_over_displayed: r.width ? +(img.naturalWidth / r.width).toFixed(2) : null,
    retina: r.width > 0 && img.naturalWidth / r.width >= 1.5,
    broken: !img.complete || img.naturalWidth === 0,
    numbered_caption: !!(num && /^\s*(Fig|Figure)/i.test(num.textContent)) || /^\s*Fig(ure|\.)?\s*\d/i.test(capText),
    caption_number: num ? clean(num.textContent) : '', caption: snip(capText.replace(num ? clean(num.textContent) : '', ''), 110),
    in_output: !!img.closest('.cell_output'), section: section(img), y: Y(img), y_bottom: Yb(img),
    figure_bottom: fig ? Yb(fig) : null});
}
// tables inventory
const tables = [];
for (const t of art.querySelectorAll('table')) {
  if (t.closest('mjx-container')) continue;
  const r = t.getBoundingClientRect();
  if (r.height === 0) continue;
  const cap = t.caption ? clean(t.caption.textContent) : '';
  tables.push({caption: snip(cap, 100), numbered: /^\s*Table\s*\d/i.test(cap), dataframe: t.classList.contains('dataframe'),
    styler: !!(t.id && t.id.startsWith('T_')), rows: t.rows.length, cols: t.rows.length ? Math.max(...[...t.rows].map(x => x.cells.length)) : 0,
    width: Math.round(r.width), width_over_column: +(r.width / colW).toFixed(3), context: context(t), section: section(t), y: Y(t), y_bottom: Yb(t)});
}
// 4. errors / warnings / leftovers
const errors = [];
for (const el of art.querySelectorAll('.output.stderr, .output.traceback, .output.error, div.stderr, .traceback'))
  errors.push({what: desc(el), snippet: snip(el.textContent, 160), context: context(el), section: section(el), y: Y(el)});
const KEYW = /Traceback|\b[A-Z]\w*(Error|Warning|Exception)\b|\b(Warning|Error|Exception|warn|error)\s*:|RuntimeWarning|DeprecationWarning/g;
for (const out of art.querySelectorAll('.cell_output')) {
  const txt = out.innerText || '';
  let m; const seen = new Set();
  KEYW.lastIndex = 0;
  while ((m = KEYW.exec(txt))) {
    if (seen.has(m[0])) continue; seen.add(m[0]);
    errors.push({what: 'output text contains "' + m[0] + '"', snippet: snip(txt.slice(Math.max(0, m.index - 60), m.index + 100), 170),
                 context: context(out), section: section(out), y: Y(out)});
  }
}
const REPR = /<(Figure size|matplotlib\.|Axes|pandas\.|numpy\.)[^>]*>|object at 0x[0-9a-f]+|\b(Posix|Windows)Path\(|^\s*array\(\[/m;
for (const out of art.querySelectorAll('.cell_output .output')) {
  if (!visible(out)) continue;
  const m = REPR.exec(out.textContent || '');
  if (m) errors.push({what: 'Python repr printed as output', snippet: snip(out.textContent.slice(Math.max(0, m.index - 20), m.index + 80).replace('Copy to clipboard', ''), 120),
                      context: context(out), section: section(out), y: Y(out)});
}
for (const e of art.querySelectorAll('mjx-merror, [data-mjx-error]'))
  errors.push({what: 'MathJax error', snippet: snip(e.getAttribute('data-mjx-error') || e.textContent, 160), context: '', section: section(e), y: Y(e)});
const untypeset = [];
for (const m of art.querySelectorAll('.math')) if (!m.querySelector('mjx-container')) untypeset.push({snippet: snip(m.textContent, 80), section: section(m), y: Y(m)});
const PATS = [['$', /\$/g], ['\\frac', /\\frac/g], ['\\sigma', /\\sigma/g], ['_{', /_\{/g], ['^{', /\^\{/g],
  ['\\command', /\\(?!frac|sigma)[A-Za-z]+/g], ['nan', /\bnan\b/gi], ['None', /\bNone\b/g], ['inf', /\b-?inf\b/g],
  ['{role}', /\{(cite|ref|numref|eq|doc|glue|glue:\w+|term|math|download)\}/g], ['??', /\?\?/g],
  ['repr', /<(Figure|matplotlib|Axes|pandas|numpy)[^>]*>|object at 0x[0-9a-f]+|\b(Posix|Windows)?Path\('|\barray\(\[|dtype[=:]/g]];
const leftovers = [];
const tw = document.createTreeWalker(art, NodeFilter.SHOW_TEXT, {acceptNode(n) {
  const p = n.parentElement;
  if (!p || p.closest('script, style, pre, code, kbd, samp, textarea, mjx-container, .headerlink, .highlight')) return NodeFilter.FILTER_REJECT;
  return NodeFilter.FILTER_ACCEPT; }});
const count = {};
for (let n; (n = tw.nextNode());) {
  const t = n.nodeValue;
  for (const [name, re] of PATS) {
    re.lastIndex = 0; let m;
    while ((m = re.exec(t))) {
      const p = n.parentElement;
      const where = p.closest('dt.sig') ? 'api signature' : p.closest('table') ? 'table' : p.closest('.cell_output') ? 'output'
                  : p.closest('figcaption, caption') ? 'caption' : p.closest('h1,h2,h3,h4,h5,h6') ? 'heading' : 'text';
      if (where === 'api signature') continue;  // default values like mean=None are fine there
      count[name] = (count[name] || 0) + 1;
      if (count[name] > 40) continue;
      const blk = (p.closest('td,th,li,p,dt,dd,figcaption,caption,h1,h2,h3,h4') || p);
      const bt = blk.textContent;
      let near;
      if (bt.length < 100) near = bt; else { const i = bt.indexOf(m[0]) >= 0 ? bt.indexOf(m[0]) : 0; near = '…' + bt.slice(Math.max(0, i - 50), i + 50) + '…'; }
      const rec = {pattern: name, match: m[0], where, text: snip(near, 140), context: context(p), section: section(p), y: Y(p)};
      const td = p.closest('td, th');
      if (td && td.parentElement) {
        const tbl = td.closest('table');
        const hdr = tbl.querySelector('thead tr:last-child') || tbl.rows[0];
        const hc = hdr && hdr.cells[td.cellIndex];
        rec.column = hc ? snip(hc.textContent, 40) : String(td.cellIndex);
        rec.row = snip(td.parentElement.cells[0] ? td.parentElement.cells[0].textContent : '', 40);
      }
      leftovers.push(rec);
    }
  }
}
// headings numbered twice, captions numbered twice
const headings = [];
for (const h of heads) {
  const t = clean(h.textContent);
  if (/^(\d+\.)+\d*\s+(\(?\d+[.)]|[IVX]+\.\s|§\s*\d|Section\s+\d)/.test(t)) headings.push({level: h.tagName, text: t, y: Y(h)});
}
for (const c of art.querySelectorAll('figcaption, caption')) {
  const t = clean(c.textContent);
  if (/^(Fig\.?|Figure|Table)\s*[\d.]+\s*(Fig(ure)?\.?|Table)\s*\d+\s*[:.]\s/i.test(t)) headings.push({level: 'caption', text: snip(t, 90), y: Y(c)});
}
// empty outputs
const empty = [];
for (const o of art.querySelectorAll('.cell_output')) {
  const r = o.getBoundingClientRect();
  if (o.closest('details:not([open])')) continue;
  if (!clean(o.textContent) && !o.querySelector('img, svg, canvas, iframe, video, table')) empty.push({height: Math.round(r.height), context: context(o), section: section(o), y: Y(o)});
}
for (const f of art.querySelectorAll('figure')) if (!f.querySelector('img, svg, canvas, table'))
  empty.push({height: Math.round(f.getBoundingClientRect().height), context: 'figure without image: ' + snip(f.textContent, 80), section: section(f), y: Y(f)});
// typography of tables and text
const typo = [];
const rangeRect = node => { const r = document.createRange(); r.selectNodeContents(node); const rs = [...r.getClientRects()].filter(q => q.width > 0); return rs; };
for (const t of art.querySelectorAll('table')) {
  if (!visible(t) || t.closest('mjx-container')) continue;
  const cap = t.caption ? snip(t.caption.textContent, 70) : '';
  const where = cap || context(t) || section(t);
  // adjacent cell texts that touch (no padding between columns)
  let touching = 0, example = '';
  for (const row of [...t.rows].slice(0, 40)) {
    const cells = [...row.cells];
    for (let i = 0; i + 1 < cells.length; i++) {
      const a = rangeRect(cells[i]), b = rangeRect(cells[i + 1]);
      if (!a.length || !b.length) continue;
      const ar = a[a.length - 1], br = b[0];
      if (Math.abs(ar.top - br.top) > 4) continue;           // not on the same line
      const gap = br.left - ar.right;
      if (gap < 5) { touching++; if (!example) example = snip(cells[i].textContent, 25) + '|' + snip(cells[i + 1].textContent, 25) + ' (gap ' + Math.round(gap) + ' px)'; }
    }
  }
  if (touching) typo.push({what: 'table cells touch (no space between columns)', count: touching, example, where, y: Y(t)});
  // pandas default RangeIndex shown as first column
  const ths = [...t.querySelectorAll('tbody tr > th:first-child')].map(x => x.textContent.trim());
  if (ths.length >= 2 && ths.every((x, i) => x === String(i)))
    typo.push({what: 'shows the default 0..n-1 index column', count: ths.length, example: '', where, y: Y(t)});
  // raw snake_case column names
  const hdr = [...t.querySelectorAll('thead th')].map(x => x.textContent.trim()).filter(x => /^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)+$/.test(x));
  if (hdr.length) typo.push({what: 'raw snake_case column names', count: hdr.length, example: hdr.slice(0, 6).join(', '), where, y: Y(t)});
  // cells truncated by pandas (display.max_colwidth)
  const trunc = [...t.querySelectorAll('td, th')].filter(c => /\.\.\.$|…$/.test(c.textContent.trim()));
  if (trunc.length) typo.push({what: 'cell text truncated with "..."', count: trunc.length, example: snip(trunc[0].textContent, 60), where, y: Y(t)});
}
// links whose underline hides underscores (σ_b reads "σ b")
const ulinks = [...art.querySelectorAll('a')].filter(a => visible(a) && /_/.test(a.textContent) && !a.querySelector('code')
  && getComputedStyle(a).textDecorationLine.includes('underline'));
if (ulinks.length) typo.push({what: 'underlined link text containing "_" (the underline hides it)', count: ulinks.length,
  example: snip(ulinks[0].textContent, 70), where: section(ulinks[0]), y: Y(ulinks[0])});
// numbers in scientific notation broken across two lines (e.g. "3.762e-" / "11")
const NUM = /[-+]?\d[\d.,]*e[-+]\d+/g;
const tw2 = document.createTreeWalker(art, NodeFilter.SHOW_TEXT, {acceptNode(n) {
  const p = n.parentElement; return p && !p.closest('script, style, pre, code, mjx-container') ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT; }});
let broken = 0, brokenEx = '', brokenEl = null;
for (let n; (n = tw2.nextNode());) {
  NUM.lastIndex = 0; let m;
  while ((m = NUM.exec(n.nodeValue))) {
    const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
    const rs = [...r.getClientRects()].filter(q => q.width > 0);
    if (rs.length > 1 && Math.abs(rs[0].top - rs[rs.length - 1].top) > 4) { broken++; if (!brokenEx) { brokenEx = m[0]; brokenEl = n.parentElement; } }
  }
}
if (broken) typo.push({what: 'number in e-notation broken across two lines', count: broken, example: brokenEx, where: section(brokenEl), y: Y(brokenEl)});
// punctuation pushed to the next line after inline math
let orphan = 0, orphanEx = '', orphanEl = null;
for (const m of art.querySelectorAll('span.math')) {
  const nx = m.nextSibling;
  if (!nx || nx.nodeType !== 3 || !/^[.,;:)]/.test(nx.nodeValue)) continue;
  const r = document.createRange(); r.setStart(nx, 0); r.setEnd(nx, 1);
  const q = r.getClientRects()[0], mr = m.getBoundingClientRect();
  if (q && mr.height && q.top > mr.bottom - 2) { orphan++; if (!orphanEx) { orphanEx = snip(m.textContent, 30) + ' ⏎ ' + nx.nodeValue.slice(0, 20); orphanEl = m; } }
}
if (orphan) typo.push({what: 'punctuation wrapped to the next line after inline math', count: orphan, example: orphanEx, where: section(orphanEl), y: Y(orphanEl)});
const title = heads.length ? clean(heads[0].textContent) : document.title;
return JSON.stringify({title, column_width: Math.round(colW), column_left: Math.round(colLeft), viewport_width: window.innerWidth,
  page_height: document.documentElement.scrollHeight, overflow, math_display: math, code, figures, tables,
  errors, typography: typo, untypeset_math: untypeset, leftovers, leftover_counts: count, double_numbering: headings, empty_outputs: empty});
})()
"""

# after the screenshots: open every <details> and measure code that would overflow when expanded
HIDDEN_JS = r"""
(() => {
const art = document.querySelector('main .bd-article') || document.querySelector('.bd-article') || document.querySelector('main') || document.body;
const closed = [...art.querySelectorAll('details:not([open])')];
closed.forEach(d => d.open = true);
const out = [];
for (const d of closed) for (const pre of d.querySelectorAll('pre')) {
  if (pre.scrollWidth > pre.clientWidth + 1) {
    const longest = pre.textContent.split('\n').reduce((a, s) => s.length > a.length ? s : a, '');
    out.push({scrollWidth: pre.scrollWidth, clientWidth: pre.clientWidth, excess_px: pre.scrollWidth - pre.clientWidth,
              longest_line: longest.trim().slice(0, 100), longest_chars: longest.length});
  }
}
closed.forEach(d => d.open = false);
return JSON.stringify(out);
})()
"""


# --------------------------------------------------------------------------
def find_chrome(arg: str | None) -> str:
    for c in [arg, os.environ.get("CHROME"), "chromium", "chromium-browser", "google-chrome",
              "google-chrome-stable", "chrome"]:
        if c and (shutil.which(c) or Path(c).is_file()):
            return shutil.which(c) or c
    sys.exit("page_audit: no Chromium/Chrome found (give --chrome PATH or set $CHROME)")


def list_pages(root: Path, include: list[str] | None) -> list[Path]:
    if include:
        pages = sorted({p for g in include for p in root.glob(g) if p.suffix == ".html"})
    else:
        pages = [root / "index.html"] if (root / "index.html").exists() else []
        for p in sorted(root.rglob("*.html")):
            rel = p.relative_to(root)
            if any(part.startswith(("_", ".")) for part in rel.parts):
                continue
            if len(rel.parts) == 1:
                if rel.name in SKIP_PAGES or rel.name == "index.html":
                    continue
            pages.append(p)
        pages = nav_order(root, pages)
    return pages


REDIRECT = re.compile(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"]+)"', re.I)


def redirect_target(page: Path) -> str | None:
    head = page.read_text(errors="replace")[:2000]
    m = REDIRECT.search(head)
    return m.group(1) if m and len(head) < 1000 else None


def nav_order(root: Path, pages: list[Path]) -> list[Path]:
    """Sort pages in the order of the book's navigation sidebar (pages not in it last)."""
    order = []
    for src in pages:
        if redirect_target(src):
            continue
        html = src.read_text(errors="replace")
        m = re.search(r'<nav class="[^"]*bd-docs-nav.*?</nav>', html, re.S)
        if not m:
            continue
        for href in re.findall(r'<a class="reference internal[^"]*" href="([^"#]*)', m.group(0)):
            p = (src.parent / urllib.parse.unquote(href)).resolve() if href else src.resolve()
            if p not in order:
                order.append(p)
        break
    rank = {p: i for i, p in enumerate(order)}
    return sorted(pages, key=lambda p: (0 if p.resolve() == (root / "index.html").resolve() else 1,
                                        rank.get(p.resolve(), len(rank)), str(p)))


def png_dpi(src: str, root: Path):
    try:
        if src.startswith("data:"):
            data = base64.b64decode(src.split(",", 1)[1])
            im = Image.open(io.BytesIO(data))
        else:
            path = Path(urllib.parse.unquote(urllib.parse.urlparse(src).path))
            im = Image.open(path)
        dpi = im.info.get("dpi")
        return float(dpi[0]) if dpi else None
    except Exception:
        return None


def segments_of(y0: float, y1: float, seg_h: int) -> list[int]:
    return list(range(int(y0 // seg_h) + 1, int(max(y0, y1 - 1) // seg_h) + 2))


def capture_segments(ch: Chrome, width: int, height: int, seg_h: int) -> list[bytes]:
    out = []
    for k in range(max(1, -(-height // seg_h))):
        y = k * seg_h
        res = ch.send("Page.captureScreenshot", format="png", captureBeyondViewport=False,
                      clip={"x": 0, "y": y, "width": width, "height": min(seg_h, height - y), "scale": 1})
        out.append(base64.b64decode(res["data"]))
    return out


def stitch(pngs: list[bytes], width: int) -> Image.Image:
    ims = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs]
    full = Image.new("RGB", (width, sum(i.height for i in ims)), "white")
    y = 0
    for i in ims:
        full.paste(i, (0, y))
        y += i.height
    return full


MATH_BOXES_JS = r"""
(() => {
const art = document.querySelector('main .bd-article') || document.querySelector('.bd-article') || document.querySelector('main') || document.body;
const heads = [...art.querySelectorAll('h1,h2,h3,h4,h5,h6')];
const out = [];
for (const mc of art.querySelectorAll('mjx-container')) {
  if (mc.getClientRects().length === 0) continue;
  // the box that clips: the nearest ancestor (or mc itself) whose overflow is not visible, up to div/span.math
  const r = mc.getBoundingClientRect();
  let h = null; for (const x of heads) { if (x.compareDocumentPosition(mc) & Node.DOCUMENT_POSITION_FOLLOWING) h = x; else break; }
  const aria = mc.querySelector('mjx-assistive-mml');
  out.push({x: r.left, y: r.top + window.scrollY, w: r.width, h: r.height, display: mc.hasAttribute('display'),
            text: ((aria ? aria.textContent : mc.textContent) || '').replace(/\s+/g, ' ').trim().slice(0, 60),
            section: h ? h.textContent.replace(/[#¶]\s*$/, '').replace(/\s+/g, ' ').trim().slice(0, 70) : ''});
}
return JSON.stringify(out);
})()
"""

UNCLIP_CSS = ("div.math, span.math, div.math mjx-container, mjx-container { overflow: visible !important; }")


def clipped_math(ch: Chrome, before: list[bytes], width: int, height: int, seg_h: int) -> list[dict]:
    """Formulas whose ink is cut off by their box: render once more with math boxes
    unclipped (overflow: visible) and compare the pixels around each formula."""
    boxes = json.loads(ch.js(MATH_BOXES_JS))
    if not boxes:
        return []
    ch.js("(() => { const s = document.createElement('style'); s.id = 'page-audit-unclip'; s.textContent = "
          + json.dumps(UNCLIP_CSS) + "; document.head.appendChild(s); return 1; })()")
    time.sleep(0.2)
    same_height = ch.js("document.documentElement.scrollHeight") == height
    after = capture_segments(ch, width, height, seg_h)
    ch.js("(() => { const s = document.getElementById('page-audit-unclip'); if (s) s.remove(); return 1; })()")
    if not same_height:
        return [{"error": "page height changed when math was unclipped; not compared"}]
    from PIL import ImageChops
    a, b = stitch(before, width), stitch(after, width)
    found = []
    pad = 8
    for m in boxes:
        x0, y0 = max(0, int(m["x"]) - pad), max(0, int(m["y"]) - pad)
        x1, y1 = min(width, int(m["x"] + m["w"]) + pad), min(a.height, int(m["y"] + m["h"]) + pad)
        if x1 <= x0 or y1 <= y0:
            continue
        diff = ImageChops.difference(a.crop((x0, y0, x1, y1)), b.crop((x0, y0, x1, y1))).convert("L")
        mask = diff.point(lambda v: 255 if v > 40 else 0)
        bbox = mask.getbbox()
        if bbox:
            n = mask.histogram()[255]
            if n >= 10:  # a few anti-aliasing pixels of an italic overhang are not worth a report
                where = []
                if y0 + bbox[1] < m["y"]:
                    where.append("top")
                if y0 + bbox[3] > m["y"] + m["h"]:
                    where.append("bottom")
                if x0 + bbox[0] < m["x"] or x0 + bbox[2] > m["x"] + m["w"]:
                    where.append("side")
                found.append({"display": m["display"], "text": m["text"], "section": m["section"],
                              "y": int(m["y"]), "pixels": n, "cut_at": where or ["inside"],
                              "segment": int(m["y"] // seg_h) + 1})
    return found


def audit_page(ch: Chrome, page: Path, root: Path, out: Path, args) -> dict:
    name = str(page.relative_to(root).with_suffix("")).replace(os.sep, "_")
    target = redirect_target(page)
    if target:
        return {"page": str(page.relative_to(root)), "name": name, "redirect": target}
    ch.viewport(args.width, args.seg_height)
    ch.send("Page.navigate", url=page.resolve().as_uri())
    time.sleep(0.2)
    wait = json.loads(ch.js(WAIT_JS, await_promise=True))
    ch.js("window.scrollTo(0, 0)")
    rep = json.loads(ch.js(MEASURE_JS.replace("__MAXLINES__", str(args.max_lines))))
    rep["page"] = str(page.relative_to(root))
    rep["name"] = name
    rep["mathjax"] = wait["mathjax"]
    rep["load_ms"] = wait["ms"]
    for f in rep["figures"]:
        dpi = png_dpi(f["src"], root)
        f["png_dpi"] = dpi
        f["css_px_per_pt"] = (round(dpi / 72 * f["displayed_width"] / f["natural_width"], 3)
                              if dpi and f["natural_width"] else None)
        f["src"] = f["src"][:60] + "…" if f["src"].startswith("data:") else os.path.basename(f["src"])
    # screenshots: make the viewport as tall as the page, then cut into segments
    seg_h = args.seg_height
    height = rep["page_height"]
    for _ in range(3):
        ch.viewport(args.width, max(height, seg_h))
        time.sleep(0.3)
        new_h = ch.js("document.documentElement.scrollHeight")
        if new_h == height:
            break
        height = new_h
    ch.js("window.scrollTo(0, 0)")
    time.sleep(0.2)
    shots = []
    before = capture_segments(ch, args.width, height, seg_h)
    for k, png in enumerate(before):
        fn = out / f"{name}_{k + 1:02d}.png"
        fn.write_bytes(png)
        shots.append(fn.name)
    rep["clipped_math"] = clipped_math(ch, before, args.width, height, seg_h)
    if rep["figures"]:  # each figure with its caption at 1:1, for a close look
        full = stitch(before, args.width)
        x0 = max(0, rep["column_left"] - 8)
        x1 = min(args.width, rep["column_left"] + rep["column_width"] + 8)
        for f in rep["figures"]:
            y0 = max(0, f["y"] - 8)
            cap_end = f.get("figure_bottom") or f["y_bottom"] + 170
            crop = full.crop((x0, y0, x1, min(full.height, cap_end + 8)))
            fn = out / f"{name}_fig{f['index']}.png"
            crop.save(fn)
            f["crop"] = fn.name
    rep["screenshots"] = shots
    rep["screenshot_height"] = height
    ch.viewport(args.width, seg_h)
    rep["hidden_code_overflow"] = json.loads(ch.js(HIDDEN_JS))
    # which segments show what
    segs: dict[int, list[str]] = {}
    for f in rep["figures"]:
        f["segments"] = segments_of(f["y"], f["y_bottom"], seg_h)
        for s in f["segments"]:
            segs.setdefault(s, []).append(f"fig {f['caption_number'] or '#' + str(f['index'])}")
    for i, t in enumerate(rep["tables"], 1):
        t["segments"] = segments_of(t["y"], t["y_bottom"], seg_h)
        for s in t["segments"]:
            segs.setdefault(s, []).append(f"table {i}")
    for o in rep["overflow"]:
        o["segments"] = segments_of(o["y"], o.get("y_bottom", o["y"]), seg_h)
    rep["segment_contents"] = {f"{name}_{k:02d}.png": v for k, v in sorted(segs.items())}
    return rep


# --------------------------------------------------------------------------
def flags_for(rep: dict, args) -> list[str]:
    """Short list of the defects found on a page, for report.md."""
    out = []
    for o in rep["overflow"]:
        if o["how"] == "sticks out of the column":
            size = f"box {o['box_width']} px vs column {o['column_width']} px, {o['excess_px']} px out"
        else:
            size = f"scrollWidth {o['scrollWidth']} vs clientWidth {o['clientWidth']} (+{o['excess_px']} px)"
        cols = ""
        if o.get("columns_out_of_view"):
            cols = "; columns out of view: " + ", ".join(
                f"'{c['text']}' (+{c['px_beyond']} px)" for c in o["columns_out_of_view"])
        where = o["context"] or o["snippet"][:60]
        if o.get("longest_line"):
            where += f"; longest line {o['longest_chars']} chars: `{o['longest_line'][:60]}`"

        margin = " [margin element]" if o.get("margin_element") else ""
        out.append(f"OVERFLOW {o['kind']} ({o['how']}{margin}): `{o['element']}` – {size}; "
                   f"§ {o['section']}; {where}{cols} [seg {','.join(map(str, o['segments']))}]")
    c = rep["code"]
    if c["visible_lines_before_first_figure"]:
        out.append(f"CODE visible before the first figure: {c['visible_lines_before_first_figure']} lines in "
                   f"{len(c['visible_cells_before_first_figure'])} cell(s)"
                   + ("" if c["first_figure_y"] is not None else " (page has no figure)"))
    for cell in c["long_visible_cells"]:
        out.append(f"CODE long visible cell: {cell['lines']} lines, starts `{cell['first_line']}`; § {cell['section']}")
    for f in rep["figures"]:
        probs = []
        if f["broken"]:
            probs.append("BROKEN image")
        if f["width_over_column"] < args.narrow:
            probs.append(f"narrow: {f['displayed_width']} px = {f['width_over_column']:.0%} of the column")
        if not f["retina"]:
            probs.append(f"not retina (natural {f['natural_width']} / displayed {f['displayed_width']} = "
                         f"{f['natural_over_displayed']})")
        if not f["numbered_caption"]:
            probs.append("no numbered caption")
        if f["css_px_per_pt"] is not None and f["css_px_per_pt"] < args.min_px_per_pt:
            probs.append(f"small text: 1 pt = {f['css_px_per_pt']} CSS px (10 pt labels ≈ "
                         f"{10 * f['css_px_per_pt']:.1f} px)")
        if probs:
            out.append(f"FIGURE {f['caption_number'] or '#' + str(f['index'])} ({f['caption'][:50]}…): " + "; ".join(probs))
    for e in rep["errors"]:
        out.append(f"ERROR/WARNING {e['what']}: {e['snippet'][:120]} ; § {e['section']}; {e['context']}")
    cm = rep.get("clipped_math", [])
    if cm and "error" in cm[0]:
        out.append(f"MATH clipping not checked: {cm[0]['error']}")
    elif cm:
        groups: dict[tuple, list] = {}
        for m in cm:
            groups.setdefault(("display" if m["display"] else "inline", m["section"]), []).append(m)
        for (kind_, sec), ms in groups.items():
            ex = "; ".join(f"“{m['text'][:40]}” ({'/'.join(m['cut_at'])}, seg {m['segment']})" for m in ms[:3])
            out.append(f"MATH CUT OFF ({kind_}) ×{len(ms)} in § {sec}: {ex}")
    if rep["untypeset_math"]:
        out.append(f"MATH not typeset: {len(rep['untypeset_math'])} element(s), e.g. {rep['untypeset_math'][0]['snippet']}")
    if rep["mathjax"] != "done" and rep["mathjax"] != "none":
        out.append(f"MATHJAX: {rep['mathjax']}")
    groups: dict[tuple, list[dict]] = {}
    for lo in rep["leftovers"]:
        groups.setdefault((lo["pattern"], lo["where"], lo["section"], lo.get("context", "")), []).append(lo)
    for (pat, where, sec, ctx), los in groups.items():
        cells = ""
        if any("column" in lo for lo in los):
            cols = sorted({lo["column"] for lo in los if "column" in lo})
            rows = sorted({lo["row"] for lo in los if "row" in lo})
            cells = f" columns {', '.join(repr(c) for c in cols)}; rows {', '.join(repr(r) for r in rows[:8])}"
        examples = list(dict.fromkeys(lo["text"][:110] for lo in los))[:2]
        out.append(f"LEFTOVER {pat!r} ×{len(los)} in {where} (§ {sec}{'; ' + ctx if ctx else ''}){cells}: "
                   + " | ".join(f"“{e}”" for e in examples))
    for k, n in rep["leftover_counts"].items():
        if n > 40:
            out.append(f"LEFTOVER {k!r}: {n} occurrences in all (first 40 listed)")
    for t in rep["typography"]:
        out.append(f"TYPOGRAPHY {t['what']}: ×{t['count']}; {t['where']}"
                   + (f"; e.g. {t['example']}" if t["example"] else ""))
    for h in rep["double_numbering"]:
        out.append(f"NUMBERED TWICE ({h['level']}): {h['text']}")
    for e in rep["empty_outputs"]:
        out.append(f"EMPTY output ({e['height']} px high): {e['context']} ; § {e['section']}")
    for h in rep["hidden_code_overflow"]:
        out.append(f"(collapsed code, when expanded) line too long: +{h['excess_px']} px, {h['longest_chars']} chars: "
                   f"`{h['longest_line'][:70]}`")
    return out


def write_md(reports: list[dict], path: Path, args):
    L = [f"# Page audit ({args.html_dir}, width {args.width} px)", ""]
    for r in reports:
        if r.get("redirect"):
            L.append(f"{r['page']} redirects to {r['redirect']} (not audited).")
    reports = [r for r in reports if not r.get("redirect")]
    tot = {"overflow": 0, "errors": 0, "leftovers": 0, "figures": 0}
    for r in reports:
        tot["overflow"] += len(r["overflow"])
        tot["errors"] += len(r["errors"])
        tot["leftovers"] += len(r["leftovers"])
        tot["figures"] += len(r["figures"])
    L.append(f"{len(reports)} pages, {tot['figures']} figures, {tot['overflow']} overflowing elements, "
             f"{tot['errors']} error/warning outputs, {tot['leftovers']} literal leftovers.")
    L.append("")
    L.append("| page | column px | figures | tables | overflow | visible code lines before 1st fig | "
             "long cells | errors | leftovers | screenshots |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        c = r["code"]
        L.append(f"| {r['page']} | {r['column_width']} | {len(r['figures'])} | {len(r['tables'])} | "
                 f"{len(r['overflow'])} | {c['visible_lines_before_first_figure']} | {len(c['long_visible_cells'])} | "
                 f"{len(r['errors'])} | {len(r['leftovers'])} | {len(r['screenshots'])} |")
    for r in reports:
        L += ["", f"## {r['page']} — {r['title']}", ""]
        L.append(f"column {r['column_width']} px, page {r['screenshot_height']} px, MathJax: {r['mathjax']}, "
                 f"cells: {r['code']['visible_cells']} visible / {r['code']['collapsed_cells']} collapsed / "
                 f"{r['code']['removed_inputs']} input removed")
        if r["segment_contents"]:
            L.append("")
            L.append("segments: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in r["segment_contents"].items()))
        L.append("")
        flags = flags_for(r, args)
        L += [f"- {f}" for f in flags] if flags else ["- no findings"]
        if r["figures"]:
            L += ["", "| fig | displayed | natural | /column | natural/displayed | px per pt | caption |",
                  "|---|---|---|---|---|---|---|"]
            for f in r["figures"]:
                L.append(f"| {f['caption_number'] or '#' + str(f['index'])} | {f['displayed_width']}×{f['displayed_height']} | "
                         f"{f['natural_width']}×{f['natural_height']} | {f['width_over_column']:.2f} | "
                         f"{f['natural_over_displayed']} | {f['css_px_per_pt']} | {f['caption'][:60]} |")
        if r["tables"]:
            L += ["", "| table | rows×cols | width px | /column | kind | caption / context |", "|---|---|---|---|---|---|"]
            for i, t in enumerate(r["tables"], 1):
                k = "dataframe" if t["dataframe"] else "styler" if t["styler"] else "table"
                L.append(f"| {i} | {t['rows']}×{t['cols']} | {t['width']} | {t['width_over_column']:.2f} | {k} | "
                         f"{t['caption'] or t['context'] or t['section']} |")
    path.write_text("\n".join(L) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("page_audit"))
    ap.add_argument("--width", type=int, default=1300, help="window width in CSS px (device scale 1)")
    ap.add_argument("--seg-height", type=int, default=1600, help="height of one screenshot segment")
    ap.add_argument("--max-lines", type=int, default=5, help="a visible code cell longer than this is reported")
    ap.add_argument("--narrow", type=float, default=0.6, help="report figures narrower than this share of the column")
    ap.add_argument("--min-px-per-pt", type=float, default=1.0,
                    help="report figures whose 1 pt is fewer CSS px than this (from the PNG dpi)")
    ap.add_argument("--pages", nargs="*", help="glob(s) relative to html_dir, e.g. 'chapters/*.html'")
    ap.add_argument("--chrome", help="Chromium/Chrome binary")
    args = ap.parse_args(argv)
    root = args.html_dir.resolve()
    pages = list_pages(root, args.pages)
    if not pages:
        sys.exit(f"page_audit: no pages under {root}")
    args.out.mkdir(parents=True, exist_ok=True)
    for pattern in ("*_[0-9][0-9].png", "*_fig[0-9]*.png"):
        for old in args.out.glob(pattern):
            old.unlink()
    ch = Chrome(find_chrome(args.chrome), args.width, args.seg_height)
    reports = []
    try:
        ch.send("Page.enable")
        for p in pages:
            t0 = time.time()
            try:
                rep = audit_page(ch, p, root, args.out, args)
            except Exception as e:  # keep going: one broken page should not hide the others
                print(f"{p.relative_to(root)}: FAILED {e}", file=sys.stderr)
                continue
            reports.append(rep)
            if rep.get("redirect"):
                print(f"{rep['page']}: redirect to {rep['redirect']} (not audited)", flush=True)
                continue
            print(f"{rep['page']}: {len(rep['overflow'])} overflow, {len(rep['figures'])} figures, "
                  f"{len(rep['errors'])} errors, {len(rep['leftovers'])} leftovers, "
                  f"{len(rep['screenshots'])} screenshots ({time.time() - t0:.1f} s)", flush=True)
    finally:
        ch.close()
    (args.out / "report.json").write_text(json.dumps(
        {"html_dir": str(root), "width": args.width, "segment_height": args.seg_height, "pages": reports},
        indent=1, ensure_ascii=False))
    write_md(reports, args.out / "report.md", args)
    print(f"wrote {args.out / 'report.md'} and report.json, {sum(len(r.get('screenshots', [])) for r in reports)} screenshots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
