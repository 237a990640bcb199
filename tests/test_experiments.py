"gift-ablate end to end on toy files: a run killed midway and resumed, the CSV schema, the plots, and bad input."
import csv, os, signal, subprocess, sys, time
import pytest
from gift_fastai.cli import gift_ablate
from gift_fastai.experiments import expand_grid, run_grid
from gift_fastai.engine import COLUMNS

LOSSES = ['kl', 'gift', 'mse']


def args(files, out, *extra):
    return ['--data', f"toy={files['data']}", '--test', files['test'], '--teacher', files['teacher'], '--out', str(out), *extra]


def rows_of(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))


def test_killed_run_resumes_without_losing_or_repeating_runs(files, tmp_path):
    out = tmp_path / 'grid'; csv_path = out / 'results.csv'
    cmd = [sys.executable, '-c', 'import sys; from gift_fastai.cli import gift_ablate_main; sys.argv[0] = "gift-ablate"; gift_ablate_main()',
           *args(files, out, '--loss', ','.join(LOSSES), '--epochs', '40', '--repeats', '2', '--checkpoint-every', '0')]
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1')
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    t0 = time.time()
    while time.time() - t0 < 300:  # kill as soon as the first run is on disk
        if csv_path.exists() and len(rows_of(csv_path)) >= 1: break
        if proc.poll() is not None: pytest.fail(f"gift-ablate ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    before = rows_of(csv_path)
    assert 1 <= len(before) < 6, f"the kill came too late to test a resume ({len(before)} of 6 runs finished)"
    assert gift_ablate(args(files, out, '--loss', ','.join(LOSSES), '--epochs', '40', '--repeats', '2')) == 0
    after = rows_of(csv_path)
    assert after[:len(before)] == before                          # finished runs untouched
    keys = [r['key'] for r in after]
    assert len(after) == 6 and len(set(keys)) == 6                # every run once
    assert sorted((r['loss'], r['repeat'], r['seed']) for r in after) == sorted((l, str(k), str(k)) for l in LOSSES for k in range(2))
    # and the schema
    with open(csv_path, newline='') as f: assert next(csv.reader(f)) == list(COLUMNS)
    for r in after:
        assert r['data'] == 'toy' and r['arch'] == 'convnet3' and r['opt'] == 'adamw' and r['epochs'] == '40'
        assert r['lr'] == '0.001' and r['wd'] == '0.0001' and r['n_train'] == '20' and r['device'] == 'cpu'
        assert (r['gamma'], r['refine']) == (('0.1', 'on') if r['loss'] == 'gift' else ('', 'off'))
        assert 0 <= float(r['final_acc']) <= float(r['best_acc']) <= 1 and float(r['seconds']) > 0
        assert r['torch'] and r['fastai'] and r['gift_fastai'] and r['finished']
    assert sorted(p.name for p in out.iterdir() if p.suffix == '.png') == ['loss_bars.png']
    summary = rows_of(out / 'summary.csv')
    assert len(summary) == 3 and all(s['n'] == '2' for s in summary)
    for s in summary:  # mean over the two repeats, computed here from the rows
        accs = [float(r['final_acc']) for r in after if r['loss'] == s['loss']]
        assert abs(float(s['final_mean']) - 50 * sum(accs)) < 1e-6


def test_grid_reproducible_and_refine_reaches_the_loss(files, tmp_path, monkeypatch):
    "Same seed, same row; refine=on for a non-GIFT loss attaches Refine with the cell's gamma."
    from gift_fastai import callbacks
    seen = []
    orig = callbacks.Refine.before_fit
    def spy(self): seen.append(self.gamma); return orig(self)
    monkeypatch.setattr(callbacks.Refine, 'before_fit', spy)
    cells = expand_grid(dict(data=[f"toy={files['data']}"], loss=['kl'], refine=['off', 'on'], gamma=[0.3]))
    kw = dict(epochs=3, repeats=1, teacher=files['teacher'], test=files['test'])
    a = run_grid(cells, tmp_path / 'a', **kw); b = run_grid(cells, tmp_path / 'b', **kw)
    assert seen == [0.3, 0.3]                                     # only the refine=on cell, in both grids
    acc = lambda rows: [(r['refine'], r['final_acc'], r['best_acc']) for r in rows]
    assert acc(a) == acc(b)


def test_bad_input_fails_early_with_one_line(files, tmp_path, capsys):
    bad = [(['--loss', 'gfit'], "'gift'"),
           (['--arch', 'convnet9'], 'convnet'),
           (['--opt', 'sgd,lamb'], 'lamb'),
           (['--ipc', '9'], '--ipc 9'),
           (['--gamma', '2'], '[0, 1]'),
           (['--refine', 'yes'], 'refine'),
           (['--loss', ','], '--loss is empty')]
    for extra, msg in bad:
        assert gift_ablate(args(files, tmp_path / 'x', *extra, '--epochs', '1', '--repeats', '1')) == 2, extra
        err = capsys.readouterr().err
        assert msg in err and err.count('\n') == 1, (extra, err)
    assert not (tmp_path / 'x' / 'results.csv').exists()          # nothing trained
    assert gift_ablate(['--data', str(tmp_path / 'missing.safetensors'), '--dry-run']) == 0   # a dry run loads nothing
    assert gift_ablate(['--data', str(tmp_path / 'missing.safetensors'), '--out', str(tmp_path / 'y')]) == 2
    assert 'missing.safetensors' in capsys.readouterr().err
    (tmp_path / 'z').mkdir(); (tmp_path / 'z' / 'results.csv').write_text('loss,acc\nkl,0.5\n')
    assert gift_ablate(args(files, tmp_path / 'z', '--epochs', '1', '--repeats', '1')) == 2
    assert 'start anew with another --out' in capsys.readouterr().err


def test_optimizer_axes_reach_the_runs(files, tmp_path):
    "--opt and --lr are axes of gift-ablate's grid (comma lists), not one protocol setting: each cell runs with its own."
    assert gift_ablate(args(files, tmp_path / 'o', '--loss', 'kl', '--opt', 'sgd,adamw', '--lr', '0.01,0.002', '--epochs', '1',
                            '--repeats', '1', '--checkpoint-every', '0')) == 0
    rows = rows_of(tmp_path / 'o' / 'results.csv')
    assert sorted((r['opt'], r['lr']) for r in rows) == [('adamw', '0.002'), ('adamw', '0.01'), ('sgd', '0.002'), ('sgd', '0.01')]
    assert {__import__('json').loads(r['settings'])['protocol']['opt'] for r in rows} == {'sgd', 'adamw'}
