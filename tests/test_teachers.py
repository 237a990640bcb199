"Teachers on disk: the save/load round trip, atomic writes, and every refusal of load_teacher / check_teacher."
import json
import pytest, torch
import safetensors.torch
from gift_fastai.core import InputError, InputTypeError
from gift_fastai.data import DistilledSet
from gift_fastai.models import create_student
from gift_fastai.teachers import (train_teacher, as_teacher, save_teacher, load_teacher, check_teacher_meta,
                                  check_teacher, TeacherWarning, _FORMAT)

NAMES = ['cat', 'dog', 'frog', 'ship']
H = 16


def bands(n_per, seed=0, C=4):
    "Class k: a bright horizontal band at its own height in a noisy RGB image."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(C).repeat_interleave(n_per)
    x = torch.rand(len(y), 3, H, H, generator=g) * 100
    h = H // C
    for i, c in enumerate(y.tolist()): x[i, :, c * h:(c + 1) * h] += 120
    return DistilledSet(x.to(torch.uint8), y, classes=NAMES[:C])


@pytest.fixture(scope='module')
def data():
    return bands(30, seed=0), bands(25, seed=1)


@pytest.fixture(scope='module')
def teacher(data):
    train, test = data
    return train_teacher(train, 'convnet3', epochs=4, valid=test, bs=32, device='cpu', arch_kwargs=dict(width=16))


def normalised(dset, meta):
    m, s = (torch.tensor(meta[k]).view(1, -1, 1, 1) for k in ('mean', 'std'))
    return (dset.images.float() / 255 - m) / s


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def test_round_trip_same_outputs_and_metadata(tmp_path, data, teacher):
    _, test = data
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    assert p == tmp_path / 't.safetensors'
    assert [f.name for f in tmp_path.iterdir()] == ['t.safetensors']  # no temporary file left
    t2 = load_teacher(p)
    assert t2.teacher_meta == teacher.teacher_meta and t2.student_cfg == teacher.student_cfg
    assert same_state(t2, teacher)  # the BatchNorm running stats too
    assert not t2.training and all(not m.training for m in t2.modules())
    x = normalised(test, teacher.teacher_meta)
    with torch.no_grad(): assert torch.equal(t2(x), teacher(x))
    # the file is plain safetensors: weights as tensors, metadata as JSON in the header
    from safetensors import safe_open
    with safe_open(str(p), 'pt') as f:
        header = json.loads(f.metadata()['gift_fastai'])
        assert set(f.keys()) == set(teacher.state_dict())
    assert header['format'] == _FORMAT and header['meta']['classes'] == NAMES
    meta = t2.teacher_meta
    assert (meta['shape'], meta['n_train'], meta['epochs'], meta['seed']) == ([3, H, H], 120, 4, 0)
    assert meta['valid_acc'] > 0.9 and meta['valid_n'] == 100
    assert {'torch', 'fastai', 'gift_fastai'} <= set(meta)


def test_load_accepts_what_matches(tmp_path, data, teacher):
    train, test = data
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    mean, std = train.stats
    t = load_teacher(p, classes=test.classes, shape=test.shape, mean=mean, std=std)
    assert t.teacher_meta['classes'] == NAMES
    load_teacher(p, mean=[m + 5e-4 for m in mean])  # within atol
    with pytest.raises(InputError): load_teacher(p, mean=[m + 5e-4 for m in mean], atol=1e-4)


def test_save_overwrites_atomically(tmp_path, data, teacher):
    p = tmp_path / 't.safetensors'
    save_teacher(as_teacher(create_student('convnet3', 4, img_size=H, width=16), NAMES, *data[0].stats), p)
    save_teacher(teacher, p)
    assert same_state(load_teacher(p), teacher)
    assert [f.name for f in tmp_path.iterdir()] == ['t.safetensors']


def test_save_failure_leaves_the_old_file_and_no_temp(tmp_path, data, teacher, monkeypatch):
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    before = p.read_bytes()
    def failing_save(tensors, filename, metadata=None):
        with open(filename, 'wb') as f: f.write(b'half a file')
        raise OSError('No space left on device')
    monkeypatch.setattr(safetensors.torch, 'save_file', failing_save)
    with pytest.raises(OSError, match='No space left'):
        save_teacher(teacher, p)
    with pytest.raises(OSError): save_teacher(teacher, tmp_path / 'new.safetensors')
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ['t.safetensors']  # neither a temporary nor a half-written file


def test_save_refuses_what_is_not_a_teacher(tmp_path):
    with pytest.raises(InputError, match=r'as_teacher\(model, classes, mean, std\)'):
        save_teacher(create_student('convnet3', 4, img_size=H, width=16), tmp_path / 'x.safetensors')
    with pytest.raises(InputTypeError, match='nn.Module'): save_teacher({'w': torch.zeros(1)}, tmp_path / 'x.safetensors')
    t = as_teacher(create_student('convnet3', 4, img_size=H, width=16), NAMES, (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(InputError, match='does not exist'): save_teacher(t, tmp_path / 'no' / 'x.safetensors')
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_permuted_classes_and_says_which(tmp_path, teacher):
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    with pytest.raises(InputError) as e: load_teacher(p, classes=['cat', 'frog', 'dog', 'ship'])
    msg = str(e.value)
    assert 'class order mismatch' in msg and '2 of 4 positions differ' in msg
    assert "position 1: teacher 'dog', yours 'frog'" in msg and "position 2: teacher 'frog', yours 'dog'" in msg
    assert "classes=teacher.teacher_meta['classes']" in msg
    with pytest.raises(InputError, match='class names differ'): load_teacher(p, classes=['cat', 'dog', 'frog', 'plane'])
    with pytest.raises(InputError, match='predicts 4 classes but you give 5'): load_teacher(p, classes=NAMES + ['x'])
    with pytest.raises(InputTypeError, match='list of class names'): load_teacher(p, classes='cat')


def test_load_refuses_shape_and_stats(tmp_path, teacher):
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    with pytest.raises(InputError, match='teacher takes 3x16x16 .* yours are 3x32x32'): load_teacher(p, shape=(3, 32, 32))
    with pytest.raises(InputError, match='teacher takes 3x16x16 .* yours are 1x16x16'): load_teacher(p, shape=(1, 16, 16))
    with pytest.raises(InputTypeError, match=r'\(C, H, W\)'): load_teacher(p, shape=16)
    with pytest.raises(InputError, match='normalisation mismatch.*mean='): load_teacher(p, mean=(0.4914, 0.4822, 0.4465))
    with pytest.raises(InputError, match="normalisation mismatch.*std=teacher.teacher_meta"): load_teacher(p, std=(1, 1, 1))
    with pytest.raises(InputError, match='mean has 1 values but the images have 3'): load_teacher(p, mean=(0.5,))


def test_load_refuses_missing_and_foreign_files(tmp_path, data):
    with pytest.raises(InputError, match='no such teacher file'): load_teacher(tmp_path / 'missing.safetensors')
    with pytest.raises(InputError, match='no such teacher file'): load_teacher(tmp_path)  # a folder
    (tmp_path / 'junk.pt').write_bytes(b'\x80\x04not a safetensors file at all')
    with pytest.raises(InputError, match='not a readable safetensors file'): load_teacher(tmp_path / 'junk.pt')
    m = create_student('convnet3', 4, img_size=H, width=16)
    torch.save(m.state_dict(), tmp_path / 'plain.pt')
    with pytest.raises(InputError, match='not a teacher file'): load_teacher(tmp_path / 'plain.pt')
    safetensors.torch.save_file({'w': torch.zeros(2)}, str(tmp_path / 'other.safetensors'))
    with pytest.raises(InputError, match='has no teacher metadata'): load_teacher(tmp_path / 'other.safetensors')
    data[0].save(tmp_path / 'set.safetensors')
    with pytest.raises(InputError, match=r'it is a DistilledSet \(load it with DistilledSet.load\)'):
        load_teacher(tmp_path / 'set.safetensors')


def test_load_refuses_weights_that_do_not_fit(tmp_path, teacher):
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    from safetensors import safe_open
    with safe_open(str(p), 'pt') as f: md = f.metadata()
    state = safetensors.torch.load_file(str(p))
    state['classifier.weight'] = state['classifier.weight'][:, :-1].contiguous()  # a tensor of another shape
    safetensors.torch.save_file(state, str(tmp_path / 'damaged.safetensors'), metadata=md)
    with pytest.raises(InputError, match='do not fit the stored architecture'): load_teacher(tmp_path / 'damaged.safetensors')


def test_check_teacher_meta_on_a_model_without_meta():
    with pytest.raises(InputError, match='no teacher_meta'): check_teacher_meta(create_student('convnet3', 4, img_size=H))


def test_check_teacher_on_a_loaded_teacher(tmp_path, data, teacher):
    _, test = data
    p = save_teacher(teacher, tmp_path / 't.safetensors')
    rep = check_teacher(p, test)
    assert rep.ok and rep.accuracy == pytest.approx(teacher.teacher_meta['valid_acc'])
    order = torch.tensor([3, 0, 1, 2])
    with pytest.warns(TeacherWarning, match='class-order mismatch') as w:
        bad = check_teacher(load_teacher(p), DistilledSet(test.images, order[test.labels], classes=list('0123')))
    assert bad.permutation == order.argsort().tolist() and bad.accuracy < 0.1
    assert '10-40 points' in str(w[0].message)
    # relabel moves the soft-label columns with the labels
    labels = order[test.labels]
    soft = torch.nn.functional.one_hot(labels, 4).float() * 5
    fixed = bad.relabel(DistilledSet(test.images, labels, soft, classes=list('0123')))
    assert torch.equal(fixed.labels, test.labels) and torch.equal(fixed.soft.argmax(1), test.labels)
    assert fixed.classes == NAMES
    with pytest.raises(InputError, match='nothing to relabel'): rep.relabel(test)


def test_train_teacher_is_deterministic(data):
    train, _ = data
    kw = dict(epochs=1, bs=32, device='cpu', arch_kwargs=dict(width=16))
    assert same_state(train_teacher(train, seed=3, **kw), train_teacher(train, seed=3, **kw))


def test_progress_in_a_log_file_is_one_line_per_epoch(tmp_path):
    "train_teacher(progress=True) writing to a file (a log, not a terminal): plain lines, no carriage-return redraws."
    script = ("import torch\nfrom gift_fastai.data import DistilledSet\nfrom gift_fastai.teachers import train_teacher\n"
              "x = (torch.arange(4).repeat_interleave(8)[:, None, None, None] * 60 + torch.zeros(32, 1, 8, 8)).to(torch.uint8)\n"
              "train_teacher(DistilledSet(x, torch.arange(4).repeat_interleave(8)), epochs=3, bs=16, device='cpu', "
              "arch_kwargs=dict(width=8), progress=True)\n")
    log = tmp_path / 'log.txt'
    import subprocess, sys
    with open(log, 'w') as f: subprocess.run([sys.executable, '-c', script], stdout=f, stderr=subprocess.DEVNULL, check=True)
    text = log.read_text()
    assert '\r' not in text, repr(text[:300])
    lines = [l for l in text.splitlines() if l.startswith('epoch ')]
    assert [l.split(':')[0] for l in lines] == ['epoch 1/3', 'epoch 2/3', 'epoch 3/3'], text
    assert 'train_loss' in lines[0] and 'time' in lines[0]


def test_default_augmentation_follows_the_kind_of_images():
    "aug='auto': digits (MNIST and kin) are not flipped; other sets, or a set of unknown source, are; the reason is recorded."
    from gift_fastai.teachers import teacher_aug
    x, y = torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.arange(2).repeat_interleave(4)
    assert teacher_aug(DistilledSet(x, y, meta=dict(source='mnist')))[0] == ['crop']
    assert teacher_aug(DistilledSet(x, y, meta=dict(source='fashion-mnist')))[0] == ['flip', 'crop']
    assert teacher_aug(DistilledSet(x, y))[0] == ['flip', 'crop']
    t = train_teacher(DistilledSet(x, y, meta=dict(source='mnist')), epochs=1, bs=8, device='cpu', arch_kwargs=dict(width=8))
    assert t.teacher_meta['aug'] == ['crop'] and 'digits' in t.teacher_meta['aug_reason']
    t = train_teacher(DistilledSet(x, y, meta=dict(source='mnist')), epochs=1, bs=8, device='cpu', aug='standard',
                      arch_kwargs=dict(width=8))
    assert t.teacher_meta['aug'] == ['flip', 'crop']
