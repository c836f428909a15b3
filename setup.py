"""Packaging for ssl3d, driven by `settings.ini` (nbdev 2 layout: the version and requirements live there)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
config = ConfigParser(delimiters=['='])
config.read(here/'settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = 'version description keywords author author_email license status min_python audience language'.split()
missing = [o for o in expected if o not in cfg]
if missing: raise ValueError(f'settings.ini is missing: {missing}')

licenses = {'apache2': 'Apache-2.0'}  # SPDX expression
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
lic = licenses[cfg['license'].lower()]
min_python = cfg['min_python']

def _reqs(key): return (cfg.get(key) or '').split()

requirements = _reqs('requirements')
extras = {
    # notebooks, plots and papermill grids
    'experiments': ['papermill>=2.4', 'seaborn>=0.12', 'pandas>=1.5', 'jupyterlab', 'scikit-image>=0.21'],
    # `--logger tensorboard` (event files) and `--init hf://owner/name` (Hub download)
    'tensorboard': ['tensorboard>=2.10'],
    'hub': ['huggingface_hub>=0.20'],
    # authoring: nbdev 2 with the versions that work together (see settings.ini)
    'dev': _reqs('dev_requirements'),
}
readme = here/'README.md'

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    license=lic,
    license_files=['LICENSE'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title(),
                 'Topic :: Scientific/Engineering :: Medical Science Apps.',
                 'Topic :: Scientific/Engineering :: Artificial Intelligence']
                + ['Programming Language :: Python :: ' + v for v in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['ssl3d', 'ssl3d.*']),
    include_package_data=False,
    install_requires=requirements,
    extras_require=extras,
    python_requires='>=' + min_python,
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else cfg['description'],
    long_description_content_type='text/markdown',
    description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'],
    keywords=cfg['keywords'],
    zip_safe=False,
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f'{cfg["lib_name"]}={cfg["lib_name"]}._modidx:d']},
)
