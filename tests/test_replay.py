"Stored FKD labels from the command line: gift-eval --protocol sre2l-fkd --labels replays them (no teacher), and refuses what does not fit."
from pathlib import Path
import numpy as np, torch
from gift_fastai.data import DistilledSet
from gift_fastai.cli import gift_eval
from gift_fastai.replay import FKDLabels, fkd_order
from gift_fastai.engine import read_results


def write_labels(root:Path, n:int, B:int, epochs:int, C:int, seed:int=42):
    "Stored labels in SRe2L's layout: whole-image crops, no flips, a CutMix box, fp16 logits (the 6-entry list), batches by the seeded sampler."
    g = torch.Generator().manual_seed(0)
    for e in range(epochs):
        (root / f'epoch_{e}').mkdir(parents=True)
        for b in range((n + B - 1) // B):
            k = len(range(n)[b * B:(b + 1) * B])
            torch.save([torch.tensor([[0., 0., 1., 1.]] * k), torch.zeros(k, dtype=torch.bool), torch.randperm(k, generator=g), 0.5,
                        [np.int64(2), np.int64(2), np.int64(6), np.int64(6)], torch.randn(k, C, generator=g).half()],
                       root / f'epoch_{e}' / f'batch_{b}.tar')


def test_gift_eval_replays_stored_labels(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(4)
    DistilledSet(torch.randint(0, 255, (12, 3, 16, 16), dtype=torch.uint8, generator=g), labels, classes=list('abc')).save(tmp_path / 'set.safetensors')
    write_labels(tmp_path / 'fkd', 12, 4, 3, 3)
    args = ['--data', str(tmp_path / 'set.safetensors'), '--test', str(tmp_path / 'set.safetensors'), '--labels', str(tmp_path / 'fkd'),
            '--protocol', 'sre2l-fkd', '--epochs', '3', '--eval-every', '1', '--repeats', '1', '--arch', 'convnet3', '--no-teacher-check']
    assert gift_eval(args + ['--loss', 'kl,gift', '--out', str(tmp_path / 'o')]) == 0
    rows = read_results(tmp_path / 'o' / 'results.csv')
    assert [r['loss'] for r in rows] == ['kl', 'gift'] and all(r['protocol'] == 'sre2l-fkd' and r['bs'] == '4' and r['teacher'] == 'stored' for r in rows)
    assert 'teacher none (stored labels)' in capsys.readouterr().out
    # what does not fit is refused in one line, exit 2: more epochs than stored, a teacher, another protocol, a smaller set
    for extra, msg in ((['--epochs', '4'], '3 are stored'), (['--teacher', str(tmp_path / 'set.safetensors')], 'drop --teacher'),
                       (['--protocol', 'sre2l'], 'sre2l-fkd'), (['--ipc', '3'], 'cover 12 images')):
        assert gift_eval(args + extra + ['--out', str(tmp_path / f'x{len(msg)}')]) == 2
        assert msg in capsys.readouterr().err, msg


def test_fkd_order_is_torchs_sampler():
    "The relabel's mapping: torch's own RandomSampler with a seeded generator, iterated epoch after epoch, gives epoch e = fkd_order(n, e)."
    from torch.utils.data import RandomSampler
    s = RandomSampler(range(37), generator=torch.Generator().manual_seed(42))
    for e in range(4): assert list(s) == fkd_order(37, e).tolist()


def test_stored_labels_replay_the_same_from_disk(tmp_path, capsys):
    "An SRe2L set in its own folders (new000/...) read from disk replays its stored labels as from memory: the same accuracy."
    from PIL import Image
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(4)
    s = DistilledSet(torch.randint(0, 255, (12, 3, 16, 16), dtype=torch.uint8, generator=g), labels, classes=list('abc'))
    s.save(tmp_path / 'test.safetensors')
    for i, (img, c) in enumerate(zip(s.images, labels.tolist())):
        d = tmp_path / 'syn' / f'new{c:03d}'; d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f'class{c:03d}_id{i % 4:03d}.png')
    write_labels(tmp_path / 'fkd', 12, 4, 3, 3)
    args = ['--data', str(tmp_path / 'syn'), '--test', str(tmp_path / 'test.safetensors'), '--labels', str(tmp_path / 'fkd'), '--protocol',
            'sre2l-fkd', '--epochs', '3', '--eval-every', '1', '--repeats', '1', '--arch', 'convnet3', '--loss', 'kl', '--workers', '0']
    acc = {}
    for where in ('memory', 'disk'):
        assert gift_eval(args + ['--data-path', where, '--out', str(tmp_path / where)]) == 0, capsys.readouterr().err
        acc[where] = [r['final_acc'] for r in read_results(tmp_path / where / 'results.csv')]
    assert 'on disk' in capsys.readouterr().out
    assert acc['memory'] == acc['disk'], acc
