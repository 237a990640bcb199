"""Honest evaluation end to end: selection on held-out real training images (never the test or distilled images), per-class
results and confusion matrices, paired comparisons against the protocol's native loss, on the commands' toy files."""
import csv, json
from pathlib import Path
import numpy as np, torch
from scipy import stats
from gift_fastai.cli import gift_eval, gift_ablate
from gift_fastai.data import DistilledSet
from gift_fastai.stats import _digests

from conftest import blobs  # noqa: F401  (and the `files` fixture of conftest.py)


def _real(files, d:Path) -> Path:
    "Real training images as a user has them: more blobs, mixed with copies of every test image and every distilled image."
    more, test, dset = blobs(15, seed=5), DistilledSet.load(files['test']), DistilledSet.load(files['data'])
    x = torch.cat([more.images, test.images, dset.images]); y = torch.cat([more.labels, test.labels, dset.labels])
    return DistilledSet(x, y, classes=more.classes).save(d / 'real.safetensors')


def test_gift_eval_selects_on_heldout_images_and_compares_paired(files, tmp_path, capsys):
    real = _real(files, tmp_path)
    args = ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift,kl', '--epochs', '4',
            '--eval-every', '1', '--repeats', '3', '--heldout', str(real), '--heldout-per-class', '12', '--out', str(tmp_path / 'o')]
    assert gift_eval(args) == 0, capsys.readouterr().err
    md = (tmp_path / 'o' / 'results.md').read_text()  # (the table as printed, unwrapped)
    assert 'held-out selected (%)' in md and 'Δ final vs gift (95% CI)' in md and 'seeds needed' in md, md
    rows = list(csv.DictReader(open(tmp_path / 'o' / 'results.csv')))
    assert len(rows) == 6 and all(r['n_heldout'] == '48' for r in rows)
    for r in rows:  # the selected epoch is the first best on the held-out images; its test accuracy is the one recorded then
        held, evals = json.loads(r['heldout_evals']), dict((e, a) for e, a in json.loads(r['evals']))
        best = max(a for _, a in held)
        e = next(e for e, a in held if a == best)
        assert int(r['selected_epoch']) == e and float(r['heldout_selected_acc']) == evals[e]
        pc = json.loads(r['per_class']); cm = json.loads((tmp_path / 'o' / 'confusion' / f"{r['key']}.json").read_text())['final']
        cm = np.array(cm); assert cm.sum() == int(r['n_test']) and np.allclose(pc, cm.diagonal() / cm.sum(1), atol=1e-6)
        assert abs(cm.diagonal().sum() / cm.sum() - float(r['final_acc'])) < 1e-9
    res = json.loads((tmp_path / 'o' / 'results.json').read_text())
    kl = next(s for s in res['summary'] if s['loss'] == 'kl')
    a = [float(r['final_acc']) for r in sorted(rows, key=lambda r: r['seed']) if r['loss'] == 'kl']
    b = [float(r['final_acc']) for r in sorted(rows, key=lambda r: r['seed']) if r['loss'] == 'gift']
    assert kl['ref'] == 'gift' and abs(kl['diff'] - np.mean(np.subtract(a, b))) < 1e-6
    if np.std(np.subtract(a, b)) > 0: assert abs(kl['p'] - stats.ttest_rel(a, b).pvalue) < 1e-5


def test_the_heldout_sample_never_holds_test_or_distilled_images(files, tmp_path):
    from gift_fastai.assets import load_heldout
    real, test, dset = _real(files, tmp_path), DistilledSet.load(files['test']), DistilledSet.load(files['data'])
    for seed in range(3):
        h = load_heldout(real, dset, [dset, test], per_class=100, seed=seed)
        assert not set(_digests(h)) & (set(_digests(test)) | set(_digests(dset)))
        assert h.class_counts.tolist() == [15] * 4   # every other image: the 15 new ones of each class


def test_heldout_that_is_the_test_set_is_refused(files, tmp_path, capsys):
    args = ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--epochs', '2', '--heldout', files['test'],
            '--out', str(tmp_path / 'x')]
    assert gift_eval(args) == 2 and 'not the test set' in capsys.readouterr().err


def test_gift_ablate_takes_heldout(files, tmp_path, capsys):
    real = _real(files, tmp_path)
    args = ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift,kl', '--epochs', '2',
            '--eval-every', '1', '--repeats', '1', '--heldout', str(real), '--heldout-per-class', '5', '--out', str(tmp_path / 'g')]
    assert gift_ablate(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'g' / 'results.csv')))
    assert len(rows) == 2 and all(r['n_heldout'] == '20' and r['heldout_selected_acc'] for r in rows)
