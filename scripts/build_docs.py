"""Build README.md and an offline HTML docs site from the notebooks, without quarto.

`nbdev_docs` / `nbdev_readme` need quarto, which cannot be installed on every machine. This script does the
same job with nbconvert, from the notebooks' stored outputs (no execution):

* `README.md` from `nbs/index.ipynb` (hidden cells and `#|` directives dropped, text outputs kept);
* `nbs/sidebar.yml` (quarto's sidebar, grouped by area) from the notebook numbers;
* `_site/`: one HTML page per notebook, each with the sidebar, plus `index.html`; every name in a module's
  `__all__` gets an API entry (signature, docstring, docments table of its parameters) right after the notebook
  cell that defines it, as quarto's `show_doc` would.

`--check` builds into a temporary folder and fails if README.md or sidebar.yml are stale, a page is missing,
a link is broken, a notebook's figures did not make it into its page, an exported symbol has no API entry, a page
shows an empty prompt or leaked quarto syntax, or a stored output shows a machine path, an ipykernel/traceback
stderr box, an error, or a long repr.

Usage: python scripts/build_docs.py [--out _site] [--check]
"""
from __future__ import annotations
import argparse, ast, base64, html, importlib, inspect, json, re, shutil, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
# area of a notebook by its number's tens digit (ARCHITECTURE.md's rooms)
AREAS = [('0', 'Core and data'), ('1', 'Transforms and patches'), ('2', 'Targets'), ('3', 'Losses'),
         ('4', 'Models'), ('5', 'Methods'), ('6', 'Training and evaluation'), ('7', 'Fine-tuning'),
         ('8', 'Command line'), ('9', 'Experiments')]
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')


def notebooks() -> list[Path]:
    "All documentation notebooks (files or folders starting with `_` or `.` are skipped, as nbdev does)."
    out = []
    for p in sorted(NBS.rglob('*.ipynb')):
        rel = p.relative_to(NBS)
        if any(part.startswith(('_', '.')) for part in rel.parts) or '.ipynb_checkpoints' in rel.parts: continue
        out.append(p)
    return out


def area_of(p: Path) -> str:
    rel = p.relative_to(NBS)
    if rel.name == 'index.ipynb' and len(rel.parts) == 1: return 'Home'
    if rel.parts[0] == 'experiments': return 'Experiments'
    m = re.match(r'(\d)\d', rel.name)
    return dict(AREAS).get(m.group(1), 'Other') if m else 'Tutorials'


def _directives(cell) -> dict:
    d = {}
    for line in cell.get('source', '').splitlines():
        m = DIRECTIVE.match(line)
        if m:
            k, _, v = m.group(1).partition(':')
            d[k.strip()] = v.strip() or True
    return d


def _visible_source(cell) -> str:
    return '\n'.join(l for l in cell.get('source', '').splitlines() if not DIRECTIVE.match(l)).strip()


def title_of(p: Path) -> tuple[str, str]:
    nb = json.loads(p.read_text())
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            src = ''.join(c['source'])
            m = re.search(r'^#\s+(.+)$', src, re.M)
            if m:
                sub = re.search(r'^>\s*(.+)$', src, re.M)
                return m.group(1).strip(), (sub.group(1).strip() if sub else '')
    return p.stem, ''


def _load(p: Path) -> dict:
    nb = json.loads(p.read_text())
    for c in nb['cells']:
        if isinstance(c.get('source'), list): c['source'] = ''.join(c['source'])
    return nb


def readme_text() -> str:
    "README.md from nbs/index.ipynb: markdown as is, visible code and its text output as fenced blocks."
    nb = _load(NBS / 'index.ipynb')
    parts = ['<!-- Generated from nbs/index.ipynb by scripts/build_docs.py: edit the notebook, not this file. -->']
    for c in nb['cells']:
        d = _directives(c)
        if 'hide' in d or d.get('include') == 'false': continue
        if c['cell_type'] == 'markdown': parts.append(c['source'].strip()); continue
        if c['cell_type'] != 'code': continue
        src = _visible_source(c)
        if src and 'echo' not in d: parts.append(f'```python\n{src}\n```')
        texts = []
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if o.get('output_type') == 'stream': texts.append(''.join(o['text']))
            elif 'text/markdown' in data:  # a table the notebook reads from committed results: inserted as markdown
                if texts: parts.append('```\n' + ''.join(texts).rstrip() + '\n```'); texts = []
                parts.append(''.join(data['text/markdown']).strip())
            elif 'text/plain' in data and 'image/png' not in data:
                texts.append(''.join(data['text/plain']))
        if texts: parts.append('```\n' + ''.join(texts).rstrip() + '\n```')
    return '\n\n'.join(parts) + '\n'


def sidebar_yml() -> str:
    "nbs/sidebar.yml for quarto, grouped by area."
    groups: dict[str, list[str]] = {}
    for p in notebooks():
        a = area_of(p)
        if a == 'Home': continue
        groups.setdefault(a, []).append(str(p.relative_to(NBS)))
    lines = ['website:', '  sidebar:', '    contents:', '      - index.ipynb']
    for a, files in groups.items():
        lines += [f'      - section: {a}', '        contents:'] + [f'          - {f}' for f in files]
    return '\n'.join(lines) + '\n'


def _page_name(p: Path) -> str:
    return str(p.relative_to(NBS).with_suffix('.html')).replace('/', '__')


def _nav(current: Path, pages: list[Path]) -> str:
    items, last = [], None
    for p in pages:
        a = area_of(p)
        if a != last:
            items.append(f'<div class="ssl3d-area">{html.escape(a)}</div>'); last = a
        t = html.escape(title_of(p)[0])
        cls = ' class="current"' if p == current else ''
        items.append(f'<a{cls} href="{"index.html" if a == "Home" else _page_name(p)}">{t}</a>')
    return '<nav class="ssl3d-nav">' + '\n'.join(items) + '</nav>'


_CSS = """<style>
.ssl3d-nav{position:fixed;top:0;left:0;width:230px;height:100%;overflow:auto;padding:12px;background:#f6f8fa;
 border-right:1px solid #ddd;font:14px/1.4 sans-serif}
.ssl3d-nav a{display:block;color:#0366d6;text-decoration:none;padding:2px 0 2px 8px}
.ssl3d-nav a.current{font-weight:bold}.ssl3d-area{margin-top:10px;font-weight:bold;color:#444}
body{margin-left:250px !important}
.jp-RenderedText pre,.jp-InputArea pre,.highlight pre{white-space:pre-wrap;overflow-wrap:anywhere}
.ssl3d-api{border-left:3px solid #0366d6;margin:10px 0;padding:4px 12px;background:#fafbfc}
.ssl3d-api-name{margin:4px 0}.ssl3d-api-kind{color:#888;font-size:smaller}
.ssl3d-api-table{border-collapse:collapse;font-size:smaller}.ssl3d-api-table td,.ssl3d-api-table th{border:1px solid #ddd;padding:2px 6px;text-align:left}
</style>"""


def _embed_local_images(body: str, folder: Path) -> str:
    "Inline images that markdown cells link by relative path (e.g. committed experiment figures)."
    def sub(m):
        src = m.group(2)
        f = (folder / html.unescape(src)).resolve()
        if src.startswith(('data:', 'http:', 'https:')) or not f.is_file(): return m.group(0)
        mime = {'.png': 'image/png', '.svg': 'image/svg+xml', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg'}.get(f.suffix.lower())
        if mime is None: return m.group(0)
        return m.group(1) + f'data:{mime};base64,' + base64.b64encode(f.read_bytes()).decode() + m.group(3)
    return re.sub(r'(<img[^>]*?src=")([^"]+)(")', sub, body)


# ---------------------------------------------------------------- API reference
CELL_MARK = re.compile(r'^# %% (\S+\.ipynb) (\d+)\s*$')


def _all_names(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '__all__' for t in node.targets):
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return []


def _defined(node) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): return [node.name]
    if isinstance(node, ast.Assign): return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name): return [node.target.id]
    return []


def api_index(lib: Path | None = None) -> dict[tuple[str, int], list[tuple[str, str]]]:
    "(notebook relative to nbs/, cell index) -> [(module, name)] for every name in every module's `__all__`."
    lib = lib or ROOT / 'ssl3d'
    out: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for py in sorted(lib.rglob('*.py')):
        if py.name.startswith('_'): continue
        lines = py.read_text().splitlines()
        tree = ast.parse('\n'.join(lines))
        wanted = set(_all_names(tree))
        mod = '.'.join(py.relative_to(lib.parent).with_suffix('').parts)
        marks = [(i + 1, m.group(1), int(m.group(2))) for i, l in enumerate(lines) if (m := CELL_MARK.match(l))]
        for node in tree.body:
            for name in _defined(node):
                if name not in wanted: continue
                where = [mk for mk in marks if mk[0] <= node.lineno]
                if not where: continue
                nb = (py.parent / where[-1][1]).resolve().relative_to(NBS.resolve())
                out.setdefault((str(nb), where[-1][2]), []).append((mod, name))
                wanted.discard(name)
    return out


def exported_symbols(lib: Path | None = None) -> list[tuple[str, str]]:
    "(module, name) for every name in every `__all__` of the library."
    lib = lib or ROOT / 'ssl3d'
    return [('.'.join(py.relative_to(lib.parent).with_suffix('').parts), n) for py in sorted(lib.rglob('*.py'))
            if not py.name.startswith('_') for n in _all_names(ast.parse(py.read_text()))]


def api_anchor(mod: str, name: str) -> str: return f'api-{mod}.{name}'


def _type_name(t) -> str:
    if t is inspect.Parameter.empty or t is None: return ''
    return t.__name__ if isinstance(t, type) else str(t).replace('typing.', '')


def _short(v, n=60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n - 1] + '…'


def _code_spans(text: str) -> str:
    "Escape `text` for HTML and show its `backticked` spans as code."
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(text))


def _param_name(p: inspect.Parameter) -> str:
    return {p.VAR_POSITIONAL: '*', p.VAR_KEYWORD: '**'}.get(p.kind, '') + p.name


def api_html(mod: str, name: str) -> str:
    "One API entry: heading with an anchor, signature, docstring, and the docments table of the parameters."
    from fastcore.docments import docments
    obj = getattr(importlib.import_module(mod), name)
    e = html.escape
    head = f'<div class="ssl3d-api" id="{api_anchor(mod, name)}"><p class="ssl3d-api-name"><code>{e(mod)}.<b>{e(name)}</b></code>'
    if not (inspect.isclass(obj) or callable(obj)):
        return head + f' <span class="ssl3d-api-kind">constant</span></p><pre>{e(name)} = {e(_short(obj, 300))}</pre></div>'
    kind = 'class' if inspect.isclass(obj) else 'function'
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): sig = None
    params = [] if sig is None else [p for p in sig.parameters.values() if p.name not in ('self', 'cls')]
    one = f'{name}({", ".join(_param_name(p) if p.default is inspect.Parameter.empty else f"{p.name}={_short(p.default, 40)}" for p in params)})'
    if len(one) > 100: one = f'{name}(\n' + ''.join(f'    {_param_name(p)}' + ('' if p.default is inspect.Parameter.empty else f'={_short(p.default, 40)}') + ',\n' for p in params) + ')'
    doc = inspect.getdoc(obj) or ''
    if kind == 'class' and doc == inspect.getdoc(object): doc = ''
    try: dm = docments(obj, full=True)
    except Exception: dm = {}
    rows = []
    for p in params:
        d = dm.get(p.name, {})
        default = '' if p.default is inspect.Parameter.empty else _short(p.default)
        rows.append(f'<tr><td><code>{e(_param_name(p))}</code></td><td>{e(_type_name(p.annotation))}</td><td>{e(default)}</td>'
                    f'<td>{_code_spans(d.get("docment") or "")}</td></tr>')
    ret = dm.get('return', {}) if kind == 'function' else {}
    if ret.get('docment') or (sig is not None and sig.return_annotation is not inspect.Signature.empty):
        rows.append(f'<tr><td><b>returns</b></td><td>{e(_type_name(sig.return_annotation if sig else None))}</td><td></td>'
                    f'<td>{_code_spans(ret.get("docment") or "")}</td></tr>')
    table = ('<table class="ssl3d-api-table"><tr><th>parameter</th><th>type</th><th>default</th><th>details</th></tr>'
             + ''.join(rows) + '</table>') if rows else ''
    return (head + f' <span class="ssl3d-api-kind">{kind}</span></p><pre>{e(one)}</pre>'
            + (f'<p>{_code_spans(doc)}</p>' if doc else '') + table + '</div>')


SHOW_DOC_SOURCE = re.compile(r'^\[source\]\([^)]*\)\{[^}]*\}\s*$', re.M)


def build_site(out: Path) -> list[Path]:
    "Render every notebook to `out` with nbconvert (stored outputs, hidden cells removed)."
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import Preprocessor
    import nbformat

    index = api_index()

    class Strip(Preprocessor):
        "Drop hidden cells and directives, add the API entries, strip quarto-only markup from show_doc outputs."
        def preprocess(self, nb, resources):
            cells, rel = [], resources.get('ssl3d_notebook', '')
            for i, c in enumerate(nb.cells):
                d = _directives(c)
                keep = not ('hide' in d or d.get('include') == 'false')
                if keep and c.cell_type == 'code':
                    c.source = _visible_source(c)
                    if 'hide_input' in d or 'echo' in d: c.metadata.setdefault('jupyter', {})['source_hidden'] = True
                    for o in c.get('outputs', []):
                        for mime in ('text/markdown', 'text/plain'):
                            if isinstance(o.get('data', {}).get(mime), str):
                                o['data'][mime] = SHOW_DOC_SOURCE.sub('', o['data'][mime])
                    keep = bool(c.source or c.get('outputs'))
                if keep: cells.append(c)
                for mod, name in index.get((rel, i), []):
                    api_cell = nbformat.v4.new_markdown_cell(api_html(mod, name))
                    api_cell['id'] = re.sub(r'[^\w-]', '-', api_anchor(mod, name))[-64:]
                    cells.append(api_cell)
            nb.cells = cells
            return nb, resources

    pages = notebooks()
    # index first, then by area order, then by name
    order = {a: i for i, a in enumerate(['Home'] + [a for _, a in AREAS] + ['Tutorials', 'Other'])}
    pages.sort(key=lambda p: (order.get(area_of(p), 99), str(p.relative_to(NBS))))
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(Strip(), enabled=True)
    for p in pages:
        nb = nbformat.read(p, as_version=4)
        body, _ = exporter.from_notebook_node(nb, resources={'ssl3d_notebook': str(p.relative_to(NBS))})
        body = _embed_local_images(body, p.parent)
        body = body.replace('</head>', _CSS + '</head>', 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(p, pages), body, count=1)
        name = 'index.html' if area_of(p) == 'Home' else _page_name(p)
        (out / name).write_text(body)
    return pages


LEAKS = re.compile(r'/work/|/root/|/home/\w+/|/tmp/tmp|site-packages')


STDERR_NOISE = re.compile(r'ipykernel|Traceback \(most recent call last\)')
MAX_OUTPUT_LINES = 60


def _rel(p: Path) -> str:
    try: return str(p.relative_to(ROOT))
    except ValueError: return str(p)


def check_outputs(pages: list[Path]) -> list[str]:
    "Stored outputs must not leak machine paths, kernel stderr, errors or long reprs (they end up in the docs)."
    errors = []
    for p in pages:
        for i, c in enumerate(_load(p)['cells']):
            for o in c.get('outputs', []):
                text = ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))
                where = f'{_rel(p)} cell {i}'
                m = LEAKS.search(text)
                if m: errors.append(f'{where}: stored output shows a machine path ({m.group(0)}...)')
                if o.get('output_type') == 'error': errors.append(f"{where}: stored output is an error ({o.get('ename')})")
                if o.get('name') == 'stderr' and (m := STDERR_NOISE.search(text)):
                    errors.append(f'{where}: stored stderr shows {m.group(0)!r}')
                n = text.count('\n') + 1
                if n > MAX_OUTPUT_LINES and 'text/markdown' not in o.get('data', {}):
                    errors.append(f'{where}: stored output has {n} lines (> {MAX_OUTPUT_LINES}): print less')
    return errors


EMPTY_PROMPT = re.compile(r'(In|Out)(&nbsp;|\s)*\[(&nbsp;|\s|\d)*\]:')
QUARTO_LEAK = re.compile(r'\)\{(target|style|\.)[^}]*\}|\{#[\w.-]+\}|^:::', re.M)


def check_page(name: str, text: str, expected_api: list[tuple[str, str]] = ()) -> list[str]:
    "Problems of one rendered page: prompts, quarto syntax a reader would see, missing API entries."
    errors = []
    if m := EMPTY_PROMPT.search(text): errors.append(f'{name}: shows a prompt ({html.unescape(m.group(0)).replace(chr(160), " ")})')
    if m := QUARTO_LEAK.search(text): errors.append(f'{name}: shows quarto syntax ({m.group(0)[:40]})')
    for mod, sym in expected_api:
        if f'id="{api_anchor(mod, sym)}"' not in text: errors.append(f'{name}: no API entry for {mod}.{sym}')
    return errors


def check_site(out: Path, pages: list[Path]) -> list[str]:
    errors = check_outputs(pages)
    names = {('index.html' if area_of(p) == 'Home' else _page_name(p)): p for p in pages}
    api_by_nb: dict[str, list[tuple[str, str]]] = {}
    for (nb, _), syms in api_index().items(): api_by_nb.setdefault(nb, []).extend(syms)
    placed = {s for syms in api_by_nb.values() for s in syms}
    errors += [f'{m}.{n}: exported but not defined in a notebook cell (no API entry)'
               for m, n in exported_symbols() if (m, n) not in placed]
    for name, p in names.items():
        f = out / name
        if not f.exists(): errors.append(f'missing page {name} for {p.relative_to(ROOT)}'); continue
        text = f.read_text()
        errors += check_page(name, text, api_by_nb.get(str(p.relative_to(NBS)), []))
        for href in re.findall(r'<a[^>]+href="([^"#:]+\.html)"', text):
            if not (out / href).exists(): errors.append(f'{name}: broken link {href}')
        n_png = sum('image/png' in o.get('data', {}) for c in _load(p)['cells'] for o in c.get('outputs', []))
        n_img = text.count('data:image/png;base64')
        if n_img < n_png: errors.append(f'{name}: {n_png} figures in the notebook, {n_img} in the page')
        for src in re.findall(r'<img[^>]*?src="([^"]+)"', text):
            if not src.startswith(('data:', 'http:', 'https:')): errors.append(f'{name}: image {src} not found')
    if 'index.html' not in names: errors.append('no nbs/index.ipynb, so no index.html')
    return errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / '_site'), help='output folder for the HTML site')
    ap.add_argument('--check', action='store_true', help='fail if README.md/sidebar.yml are stale or the site is broken')
    a = ap.parse_args(argv)
    errors = []
    readme, sidebar = readme_text(), sidebar_yml()
    if a.check:
        if (ROOT / 'README.md').read_text() != readme: errors.append('README.md is stale: run python scripts/build_docs.py')
        if not (NBS / 'sidebar.yml').exists() or (NBS / 'sidebar.yml').read_text() != sidebar:
            errors.append('nbs/sidebar.yml is stale: run python scripts/build_docs.py')
        out = Path(tempfile.mkdtemp(prefix='ssl3d-site-'))
    else:
        (ROOT / 'README.md').write_text(readme)
        (NBS / 'sidebar.yml').write_text(sidebar)
        out = Path(a.out)
    pages = build_site(out)
    errors += check_site(out, pages)
    if a.check: shutil.rmtree(out, ignore_errors=True)
    for e in errors: print('docs:', e, file=sys.stderr)
    print(f'docs: {len(pages)} pages' + ('' if a.check else f' in {out}') + (', OK' if not errors else f', {len(errors)} problem(s)'))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
