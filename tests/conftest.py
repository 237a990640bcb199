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


def trained_teacher(seed=0):
    "A ConvNet-3 (width 8) trained on more blobs: it labels every toy set right, as a real teacher would (the commands check it)."
    from gift_fastai.teachers import train_teacher
    return train_teacher(blobs(20, seed=7), 'convnet3', epochs=6, bs=16, lr=1e-2, seed=seed, aug=None, device='cpu',
                         arch_kwargs=dict(width=8))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    train, test = blobs(5), blobs(10, seed=1)
    t = trained_teacher()
    torch.manual_seed(0)
    wrong = as_teacher(create_student('convnet3', C, in_ch=1, img_size=H, width=8), ['e', 'n', 's', 'w'], *train.stats)
    return dict(dir=d, data=str(train.save(d / 'set.safetensors')), test=str(test.save(d / 'test.safetensors')),
                teacher=str(save_teacher(t, d / 'teacher.safetensors')), wrong=str(save_teacher(wrong, d / 'wrong.safetensors')))


