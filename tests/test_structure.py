"Module boundaries of issue 13: read the import statements of the generated modules (ast), without importing them."
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1] / 'ssl3d'


def imported_modules(path: Path) -> set[str]:
    "Absolute names of every module `path` imports (relative imports resolved against the ssl3d package)."
    parts = path.relative_to(PKG.parent).with_suffix('').parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = '.'.join(parts[:len(parts) - node.level]) if node.level else ''
            mod = '.'.join(p for p in (base, node.module or '') if p)
            out.add(mod)
            out.update(f'{mod}.{a.name}' for a in node.names)  # `from . import vectorpose` imports a module too
    return out


def test_imported_modules_resolves_relative_imports(tmp_path):
    names = imported_modules(PKG / 'methods' / 'vectorpose.py')
    assert 'ssl3d.methods.single_view' in names and 'ssl3d.methods.core' in names


def test_models_genesis_does_not_import_vectorpose():
    names = imported_modules(PKG / 'methods' / 'models_genesis.py')
    assert not any(n == 'ssl3d.methods.vectorpose' or n.startswith('ssl3d.methods.vectorpose.') for n in names), names
    assert 'ssl3d.methods.single_view' in names


def test_train_imports_no_method_code():
    names = imported_modules(PKG / 'train.py')
    assert not any(n == 'ssl3d.methods' or n.startswith('ssl3d.methods.') for n in names), sorted(names)


def layer(path: Path) -> float:
    "A module's layer: its notebook number (59 < 595 = 59.5 < 60: a third digit places a notebook between two)."
    import re
    m = re.search(r'File to edit: \S*?nbs/(\d+)_', path.read_text())
    assert m, f"{path}: no notebook header"
    n = m.group(1)
    return int(n) if len(n) <= 2 else int(n) / 10 ** (len(n) - 2)


def test_no_module_imports_a_higher_layer():
    mods = {'.'.join(p.relative_to(PKG.parent).with_suffix('').parts): p for p in PKG.rglob('*.py')
            if p.name not in ('__init__.py', '_modidx.py')}
    upward = [(name, dep) for name, p in mods.items() for dep in imported_modules(p)
              if dep in mods and dep != name and layer(mods[dep]) > layer(p)]
    assert not upward, f"modules importing a higher layer: {upward}"
    assert layer(mods['ssl3d.methods.mixcl']) == 59.5 and layer(mods['ssl3d.evaluate']) < layer(mods['ssl3d.finetune'])
