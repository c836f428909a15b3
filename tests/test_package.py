"""Packaging: the wheel holds only the package, installs beside an existing torch without replacing it,
and its commands and modules work without the dev extra."""
import json, subprocess, sys, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_ONLY = ['nbdev', 'fastcore', 'execnb', 'papermill', 'jupyterlab', 'notebook', 'IPython', 'pytest',
            'seaborn', 'pandas', 'nbconvert', 'ghapi']


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(out), str(ROOT)])
    (whl,) = out.glob('ssl3d-*.whl')
    return whl


def test_wheel_holds_only_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if not (n.startswith('ssl3d/') or n.startswith('ssl3d-'))]
    assert outside == [], outside
    assert not [n for n in names if n.endswith(('.ipynb', '.nii.gz', '.csv'))]
    assert any(n.endswith('LICENSE') for n in names), 'licence file missing from the wheel'
    assert 'ssl3d/cli.py' in names
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1024:.1f} KiB, {len(names)} files")


def _public_modules():
    idx = (ROOT / 'ssl3d' / '_modidx.py').read_text()
    files = set(__import__('re').findall(r"'(ssl3d/[\w/]+)\.py'", idx))
    return sorted(f.replace('/', '.') for f in files if not f.split('/')[-1].startswith('_'))


@pytest.mark.slow
def test_wheel_installs_beside_existing_torch(wheel, tmp_path):
    import torch
    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', str(venv)])
    py = str(venv / 'bin' / 'python')
    pip = [py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check']
    _run(pip + [f'torch=={torch.__version__.split("+")[0]}'])
    before = _run([py, '-c', 'import torch; print(torch.__version__)']).stdout.strip()
    _run(pip + [str(wheel)])
    after = _run([py, '-c', 'import torch; print(torch.__version__)']).stdout.strip()
    assert before == after, f'installing ssl3d replaced torch {before} with {after}'
    ssl3d_bin = str(venv / 'bin' / 'ssl3d')
    assert 'phantoms' in _run([ssl3d_bin, '--help']).stdout
    version = _run([ssl3d_bin, '--version']).stdout.strip()
    assert version == 'ssl3d ' + _run([py, '-c', 'import ssl3d; print(ssl3d.__version__)']).stdout.strip()
    _run([ssl3d_bin, 'phantoms', str(tmp_path / 'ph'), '--n', '2', '--n-test', '1', '--shape', '32', '32', '24'])
    assert (tmp_path / 'ph' / 'dataset.json').exists()
    mods = _public_modules()
    code = ("import importlib, json, sys\n"
            f"mods = {mods!r}\n"
            "for m in mods: importlib.import_module(m)\n"
            f"bad = [m for m in {DEV_ONLY!r} if m in sys.modules]\n"
            "print(json.dumps(dict(n=len(mods), dev_imported=bad)))\n")
    res = json.loads(_run([py, '-c', code]).stdout.strip().splitlines()[-1])
    assert res['dev_imported'] == [], f"dev-only packages imported: {res['dev_imported']}"
    assert res['n'] == len(mods) and len(mods) >= 2


def _declared_requirement(name):
    "The requirement on `name` that settings.ini's `requirements` declares (what `pip install ssl3d` asks for)."
    import configparser
    from packaging.requirements import Requirement
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    reqs = [Requirement(r) for r in cfg['DEFAULT']['requirements'].split()]
    (req,) = [r for r in reqs if r.name == name]
    return req


def test_torchio_bound_covers_installed_version():
    "settings.ini caps TorchIO's major version, and the installed TorchIO (the one the tests ran with) satisfies it."
    import torchio
    req = _declared_requirement('torchio')
    assert any(s.operator in ('<', '<=', '~=', '==') for s in req.specifier), f"no upper bound on TorchIO: {req}"
    assert req.specifier.contains(torchio.__version__, prereleases=True), \
        f"installed torchio {torchio.__version__} is outside the declared {req}"
