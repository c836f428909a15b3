"""Drop environment noise from notebooks' stored outputs (run after executing notebooks, before nbdev_clean).

Warnings such as nbdev's pkg_resources deprecation or tqdm's missing-ipywidgets notice print this machine's
paths into the stored outputs, and from there into the docs. Usage: python scripts/clean_outputs.py [NOTEBOOK ...]
"""
import json, re, sys
from pathlib import Path

NOISE = re.compile(r'pkg_resources is deprecated|TqdmWarning: IProgress not found|import pkg_resources|from \.autonotebook import')


def clean(path: Path) -> bool:
    nb = json.loads(path.read_text())
    changed = False
    for c in nb['cells']:
        outs = []
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream' and o.get('name') == 'stderr':
                lines = ''.join(o['text']).splitlines(keepends=True)
                keep = [l for l in lines if not NOISE.search(l)]
                if len(keep) != len(lines):
                    changed = True
                    if not ''.join(keep).strip(): continue
                    o['text'] = keep
            outs.append(o)
        if 'outputs' in c: c['outputs'] = outs
    if changed: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return changed


if __name__ == '__main__':
    root = Path(__file__).resolve().parents[1] / 'nbs'
    files = [Path(a) for a in sys.argv[1:]] or sorted(root.rglob('*.ipynb'))
    n = sum(clean(f) for f in files if '.ipynb_checkpoints' not in f.parts)
    print(f'clean_outputs: {n} notebook(s) changed')
