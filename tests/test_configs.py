"Every registered method's Config builds with its defaults and rejects a bad value at construction, naming the field."
import dataclasses
import pytest
from ssl3d.core import Ssl3dError
from ssl3d.methods.core import METHODS
from ssl3d.pretrain import _load_method_modules

_load_method_modules()
NAMES = sorted(METHODS.names()) if hasattr(METHODS, 'names') else sorted(METHODS._items)

# one bad value per method: (field, value); the error must read "<Config>.<field>=<value!r>"
BAD = {
    'vectorpose': [('n_vectors', 3), ('crop_size', 40), ('lam', 1.5), ('vp_hidden', 0), ('backbone', 'huge')],
    'models_genesis': [('loss', 'huber'), ('rot_p', -0.1), ('shuffle_windows', 1), ('max_tries', 0)],
    'pgl': [('pooling', 'max'), ('momentum', 1.5), ('scale_range', (1.4, 1.1)), ('hidden', 0)],
    'byol': [('roi_size', (4, 4)), ('flip_p', 2.0), ('in_channels', 0)],
    'moco': [('queue_size', 0), ('tau', -1), ('momentum_schedule', 'step'), ('min_overlap', 1.0)],
    'simsiam': [('pred_hidden', 0), ('input_size', (96, 96)), ('gamma_output', 'x')],
    'lrc': [('tau', 0), ('n_samples', 0), ('locked_borders', 3), ('layout', 'wide')],
    'mae': [('mask_ratio', 1.0), ('dec_heads', 0), ('flip_p', -1), ('min_body_fraction', 2)],
    'alice': [('momentum', 2.0), ('intensity_p', 1.5), ('strong_scales', (1.2, 0.8)), ('out_dim', 0)],
    'mixcl': [('tau', 0), ('fg_ratio', 1.5), ('budget', 0), ('elastic_control_points', 3)],
}
UNCHECKED = {'toy'}  # ToyRestoration lives in ssl3d.methods.core (a smoke-test method without field checks)


def test_every_method_has_bad_values():
    assert set(NAMES) - UNCHECKED == set(BAD), set(NAMES) ^ (set(BAD) | UNCHECKED)


@pytest.mark.parametrize('name', NAMES)
def test_default_config_builds(name):
    cfg = METHODS.get(name).Config()
    assert dataclasses.is_dataclass(cfg)


@pytest.mark.parametrize('name,field,value', [(n, f, v) for n, cases in BAD.items() for f, v in cases])
def test_bad_value_names_the_field(name, field, value):
    cls = METHODS.get(name).Config
    with pytest.raises(Ssl3dError) as e: cls(**{field: value})
    assert f"{cls.__name__}.{field}={value!r}" in str(e.value), str(e.value)
