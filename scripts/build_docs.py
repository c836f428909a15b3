"""Build README.md and an offline HTML docs site from the notebooks, without quarto.

`nbdev_docs` / `nbdev_readme` need quarto, which cannot be installed on every machine. This script does the
same job with nbconvert, from the notebooks' stored outputs (no execution):

* `README.md` from `nbs/index.ipynb` (hidden cells and `#|` directives dropped, text outputs kept);
* `nbs/sidebar.yml` (quarto's sidebar, grouped by area) from the notebook numbers;
* `_site/`: one HTML page per notebook, each with the sidebar, plus `index.html`.

`--check` builds into a temporary folder and fails if README.md or sidebar.yml are stale, a page is missing,
a link is broken or a notebook's figures did not make it into its page.

Usage: python scripts/build_docs.py [--out _site] [--check]
"""
from __future__ import annotations
import argparse, base64, html, json, re, shutil, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
# area of a notebook by its number's tens digit (ARCHITECTURE.md's rooms)
AREAS = [('0', 'Core and data'), ('1', 'Transforms'), ('2', 'Targets'), ('3', 'Losses'),
         ('4', 'Models'), ('5', 'Methods'), ('6', 'Training'), ('7', 'Evaluation'),
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
            if o.get('output_type') == 'stream': texts.append(''.join(o['text']))
            elif 'text/plain' in o.get('data', {}) and 'image/png' not in o.get('data', {}):
                texts.append(''.join(o['data']['text/plain']))
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


def build_site(out: Path) -> list[Path]:
    "Render every notebook to `out` with nbconvert (stored outputs, hidden cells removed)."
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import Preprocessor
    import nbformat

    class Strip(Preprocessor):
        def preprocess(self, nb, resources):
            cells = []
            for c in nb.cells:
                d = _directives(c)
                if 'hide' in d or d.get('include') == 'false': continue
                if c.cell_type == 'code':
                    c.source = _visible_source(c)
                    if 'hide_input' in d or 'echo' in d: c.metadata.setdefault('jupyter', {})['source_hidden'] = True
                    if not c.source and not c.get('outputs'): continue
                cells.append(c)
            nb.cells = cells
            return nb, resources

    pages = notebooks()
    # index first, then by area order, then by name
    order = {a: i for i, a in enumerate(['Home'] + [a for _, a in AREAS] + ['Tutorials', 'Other'])}
    pages.sort(key=lambda p: (order.get(area_of(p), 99), str(p.relative_to(NBS))))
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    exporter = HTMLExporter(template_name='lab')
    exporter.register_preprocessor(Strip(), enabled=True)
    for p in pages:
        nb = nbformat.read(p, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        body = _embed_local_images(body, p.parent)
        body = body.replace('</head>', _CSS + '</head>', 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(p, pages), body, count=1)
        name = 'index.html' if area_of(p) == 'Home' else _page_name(p)
        (out / name).write_text(body)
    return pages


LEAKS = re.compile(r'/work/|/root/|/home/\w+/|/tmp/tmp|site-packages')


def check_outputs(pages: list[Path]) -> list[str]:
    "Stored outputs must not leak machine paths (they end up in the docs)."
    errors = []
    for p in pages:
        for i, c in enumerate(_load(p)['cells']):
            for o in c.get('outputs', []):
                text = ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))
                m = LEAKS.search(text)
                if m: errors.append(f'{p.relative_to(ROOT)} cell {i}: stored output shows a machine path ({m.group(0)}...)')
    return errors


def check_site(out: Path, pages: list[Path]) -> list[str]:
    errors = check_outputs(pages)
    names = {('index.html' if area_of(p) == 'Home' else _page_name(p)): p for p in pages}
    for name, p in names.items():
        f = out / name
        if not f.exists(): errors.append(f'missing page {name} for {p.relative_to(ROOT)}'); continue
        text = f.read_text()
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
