"""One modality rule for every stage: pretraining and fine-tuning normalise a dataset the same way (issue 13)."""
import json
import pytest
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.pretrain import _modality
from ssl3d.data import dataset_info


@pytest.mark.parametrize('names,want', [({'0': 'CT'}, 'ct'), ({'0': 'T2', '1': 'ADC'}, 'mr'), ({'0': 'PET'}, 'mr'),
                                        ({'0': 'CT', '1': 'PET'}, 'mr')])
def test_pretraining_and_finetuning_agree_on_modality(tmp_path, names, want):
    path = write_phantom_dataset(tmp_path / 'd', n=2, n_test=0, shape=(16, 16, 16), seed=0)
    meta = json.loads(path.read_text())
    meta['modality'] = names
    path.write_text(json.dumps(meta))
    assert _modality(tmp_path / 'd', 'auto') == dataset_info(tmp_path / 'd')['modality'] == want
