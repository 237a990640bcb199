import os
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')

import pytest, torch
from gift_fastai.data import DistilledSet
from gift_fastai.models import create_student
from gift_fastai.teachers import as_teacher, save_teacher

C, H = 4, 16


def blobs(n_per, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(C).repeat_interleave(n_per)
    x = torch.rand(len(labels), 1, H, H, generator=g) * 60
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c, 2); x[i, 0, r * 8:(r + 1) * 8, q * 8:(q + 1) * 8] += 180
    return DistilledSet(x.clamp(0, 255).to(torch.uint8), labels, classes=['n', 'e', 's', 'w'], meta=dict(source='blobs'))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    train, test = blobs(5), blobs(10, seed=1)
    torch.manual_seed(0)
    t = as_teacher(create_student('convnet3', C, in_ch=1, img_size=H, width=8), train.classes, *train.stats)
    wrong = as_teacher(create_student('convnet3', C, in_ch=1, img_size=H, width=8), ['e', 'n', 's', 'w'], *train.stats)
    return dict(dir=d, data=str(train.save(d / 'set.safetensors')), test=str(test.save(d / 'test.safetensors')),
                teacher=str(save_teacher(t, d / 'teacher.safetensors')), wrong=str(save_teacher(wrong, d / 'wrong.safetensors')))


