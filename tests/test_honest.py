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
    summ = list(csv.DictReader(open(tmp_path / 'g' / 'summary.csv')))
    assert all(abs(float(s['heldout_mean']) - 100 * float(r['heldout_selected_acc'])) < 1e-3 for s, r in
               zip(sorted(summ, key=lambda s: s['loss']), sorted(rows, key=lambda r: r['loss'])))
    assert gift_ablate(args + ['--metric', 'heldout']) == 0   # (the same grid, from its store: the table of held-out selection)
    assert 'heldout = the test accuracy at the epoch' in (tmp_path / 'g' / 'summary.md').read_text()
    no_held = [a for a in args if a not in ('--heldout', str(real), '--heldout-per-class', '5')]
    no_held[no_held.index('--out') + 1] = str(tmp_path / 'h')
    assert gift_ablate(no_held + ['--metric', 'heldout']) == 2 and "needs runs with held-out images" in capsys.readouterr().err


def test_gift_eval_trains_baselines_in_the_same_run(files, tmp_path, capsys):
    "--baselines random,hard,full,teacher: the baselines' rows beside the evaluated losses, the teacher's accuracy and DD-Ranking's LRS."
    real = _real(files, tmp_path)
    args = ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift,kl', '--epochs', '2',
            '--eval-every', '1', '--repeats', '2', '--baselines', 'random,hard,full,noaug,teacher', '--real', str(real), '--out', str(tmp_path / 'b')]
    assert gift_eval(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert 'teacher on the test set:' in out and "label-robust score of gift" in out and "augmentation-robust score of kl" in out, out
    rows = list(csv.DictReader(open(tmp_path / 'b' / 'results.csv')))
    kinds = sorted((r['baseline'], r['loss']) for r in rows)
    assert kinds == sorted([('', 'gift')] * 2 + [('', 'kl')] * 2 + [('random', 'gift')] * 2 + [('random', 'kl')] * 2 +
                           [('hard', 'ce')] * 2 + [('full', 'ce')] * 2 + [('noaug', 'gift')] * 2 + [('noaug', 'kl')] * 2 +
                           [('random-noaug', 'gift')] * 2 + [('random-noaug', 'kl')] * 2), kinds
    for r in rows:  # without augmentation: no DSA strategy and no mixing in the run's protocol
        p = json.loads(r['settings'])['protocol']
        assert (p['aug'] is None and p['mix'] is None) == r['baseline'].endswith('noaug'), (r['baseline'], p['aug'], p['mix'])
    assert {r['n_train'] for r in rows if r['baseline'] == 'random'} == {'20'}        # IPC 5 × 4 classes, as the set
    test = DistilledSet.load(files['test'])
    assert {r['n_train'] for r in rows if r['baseline'] == 'full'} == {str(60 + 20)}  # the real images but the test set's copies
    cfg = json.loads((tmp_path / 'b' / 'results.json').read_text())['config']
    mean = lambda b, l: np.mean([float(r['final_acc']) for r in rows if r['baseline'] == b and r['loss'] == l])
    from gift_fastai.stats import label_robust_score
    want = label_robust_score(mean('full', 'ce'), mean('hard', 'ce'), mean('', 'gift'), mean('random', 'gift'))['lrs']
    assert abs(cfg['scores']['gift']['lrs'] - want) < 1e-5 and 0 <= cfg['scores']['gift']['lrs'] <= 1
    from gift_fastai.stats import aug_robust_score
    ars = aug_robust_score(mean('', 'kl'), mean('random', 'kl'), mean('noaug', 'kl'), mean('random-noaug', 'kl'))['ars']
    assert abs(cfg['scores']['kl']['ars'] - ars) < 1e-5 and 0 <= ars <= 1
    from gift_fastai.teachers import check_teacher, load_teacher
    assert cfg['teacher_acc_test'] == check_teacher(load_teacher(files['teacher']), test, warn=False).accuracy
    no_real = [a for a in args if a not in ('--real', str(real))]
    no_real[no_real.index('--out') + 1] = str(tmp_path / 'c')
    assert gift_eval(no_real) == 2 and 'real training images are needed' in capsys.readouterr().err


def test_storage_of_stored_labels_and_their_compression(files, tmp_path, capsys):
    "--soft-dtype/--soft-topk on a protocol that trains on the set's stored logits (datm): the storage line and config count them."
    from gift_fastai.teachers import load_teacher, store_soft_labels
    from gift_fastai.stats import soft_bytes
    dset = store_soft_labels(DistilledSet.load(files['data']), load_teacher(files['teacher']))
    dset.meta['lr'] = 0.01  # (DATM's learned lr, which its protocol trains at)
    soft = dset.save(tmp_path / 'soft.safetensors')
    args = ['--data', str(soft), '--test', files['test'], '--protocol', 'datm', '--real', str(_real(files, tmp_path)), '--epochs', '2',
            '--repeats', '1']
    assert gift_eval(args + ['--soft-dtype', 'fp16', '--soft-topk', '2', '--out', str(tmp_path / 's')]) == 0, capsys.readouterr().err
    assert 'soft labels' in capsys.readouterr().out
    st = json.loads((tmp_path / 's' / 'results.json').read_text())['config']['storage']
    assert st['images'] == 20 * 1 * 16 * 16 and st['soft_labels'] == soft_bytes(20, 4, 'fp16', 2) == 20 * 2 * 4 and st['teacher'] == 0
    assert gift_eval(args + ['--out', str(tmp_path / 'f')]) == 0
    st32 = json.loads((tmp_path / 'f' / 'results.json').read_text())['config']['storage']
    assert st32['soft_labels'] == 20 * 4 * 4
    k = [next(csv.DictReader(open(tmp_path / o / 'results.csv')))['key'] for o in 'sf']
    assert k[0] != k[1]   # other labels, another run
    assert gift_eval(['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--soft-topk', '2', '--epochs', '2',
                      '--out', str(tmp_path / 'x')]) == 2
    assert 'only a protocol that trains on them reads' in capsys.readouterr().err


def test_the_embedded_set_in_one_command(tmp_path, capsys):
    "`gift-eval --baselines random,hard --report` on the embedded set: its real training images are Fashion-MNIST's train split."
    import pytest
    from gift_fastai.datasets import DEBIAN_FASHION_MNIST
    if not (DEBIAN_FASHION_MNIST / 'train-images-idx3-ubyte.gz').exists():
        pytest.skip("Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist, as CI does)")
    assert gift_eval(['--baselines', 'random,hard', '--report', '--epochs', '2', '--eval-every', '1', '--repeats', '1',
                      '--out', str(tmp_path / 'e')]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'e' / 'results.csv')))
    assert sorted((r['baseline'], r['loss']) for r in rows) == [('', 'gift'), ('', 'kl'), ('hard', 'ce'), ('random', 'gift'), ('random', 'kl')]
    assert (tmp_path / 'e' / 'report.html').exists()


def test_gift_ablate_trains_baselines_compares_paired_and_reports(files, tmp_path, capsys):
    "gift-ablate --baselines ... --report: each cell's baselines as rows (the hard and full ones once per seed, not per loss), every cell "
    "paired by seed against the native loss, DD-Ranking's scores per cell, the teacher's row, one page; a rerun trains nothing."
    from gift_fastai.stats import label_robust_score, aug_robust_score
    from gift_fastai.teachers import check_teacher, load_teacher
    real = _real(files, tmp_path)
    args = ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift,kl', '--epochs', '2',
            '--eval-every', '1', '--repeats', '2', '--baselines', 'random,hard,full,noaug,teacher', '--real', str(real), '--report',
            '--out', str(tmp_path / 'g')]
    assert gift_ablate(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "DD-Ranking's scores of loss=gift" in out and 'teacher (' in out, out
    rows = list(csv.DictReader(open(tmp_path / 'g' / 'results.csv')))
    kinds = sorted((r['baseline'], r['loss']) for r in rows)
    assert kinds == sorted([(b, l) for b in ('', 'random', 'noaug', 'random-noaug') for l in ('gift', 'kl') for _ in range(2)]
                           + [('hard', 'ce')] * 2 + [('full', 'ce')] * 2 + [('teacher', 'teacher')]), kinds
    fp = lambda r: json.loads(r['settings'])['data']
    for s in ('0', '1'):  # one random subset per seed, shared by both losses; another one for the other seed
        assert len({fp(r) for r in rows if r['baseline'] == 'random' and r['seed'] == s}) == 1
    assert len({fp(r) for r in rows if r['baseline'] == 'random'}) == 2
    assert {r['data'] for r in rows if r['baseline'] in ('random', 'hard', 'noaug')} == {'set'} and {r['n_train'] for r in rows if r['baseline'] == 'random'} == {'20'}
    assert all(r['storage_bytes'] and int(r['storage_bytes']) > 0 for r in rows)
    teacher = [r for r in rows if r['baseline'] == 'teacher'][0]
    assert float(teacher['final_acc']) == check_teacher(load_teacher(files['teacher']), DistilledSet.load(files['test']), warn=False).accuracy
    summ = {(s['baseline'], s['loss']): s for s in csv.DictReader(open(tmp_path / 'g' / 'summary.csv'))}
    acc = lambda b, l: {r['seed']: float(r['final_acc']) for r in rows if r['baseline'] == b and r['loss'] == l}
    mean = lambda b, l: np.mean(list(acc(b, l).values()))
    kl, gift = acc('', 'kl'), acc('', 'gift')
    d = [kl[s] - gift[s] for s in ('0', '1')]
    assert summ[('', 'kl')]['ref'] == 'gift' and abs(float(summ[('', 'kl')]['final_diff']) - 100 * np.mean(d)) < 1e-3
    if np.std(d) > 0: assert abs(float(summ[('', 'kl')]['final_p']) - stats.ttest_rel([kl[s] for s in '01'], [gift[s] for s in '01']).pvalue) < 1e-5
    want = label_robust_score(mean('full', 'ce'), mean('hard', 'ce'), mean('', 'gift'), mean('random', 'gift'))['lrs']
    assert abs(float(summ[('', 'gift')]['lrs']) - want) < 1e-5
    ars = aug_robust_score(mean('', 'kl'), mean('random', 'kl'), mean('noaug', 'kl'), mean('random-noaug', 'kl'))['ars']
    assert abs(float(summ[('', 'kl')]['ars']) - ars) < 1e-5
    page = (tmp_path / 'g' / 'report.html').read_text()
    assert 'Every cell' in page and 'random baseline' in page and 'Confusion matrices' in page and 'http' not in page.replace('http-equiv', '')
    before = (tmp_path / 'g' / 'results.csv').read_text()
    assert gift_ablate(args) == 0 and (tmp_path / 'g' / 'results.csv').read_text() == before  # every run found: nothing trains again
