"gift-eval and gift-distill end to end on toy files, their outputs, an interrupted run, and their error paths."
import csv, json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from gift_fastai.cli import gift_eval, gift_distill
from gift_fastai.data import DistilledSet
from gift_fastai.models import create_student
from gift_fastai.teachers import as_teacher, save_teacher

from conftest import C, H  # noqa: F401  (the toy files: the `files` fixture of conftest.py)


def base(files, out, *extra):
    return ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--out', str(out), *extra]


def test_gift_eval_end_to_end(files, tmp_path, capsys):
    rc = gift_eval(base(files, tmp_path, '--loss', 'gift,kl', '--epochs', '2', '--repeats', '2', '--eval-every', '1'))
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / 'results.csv')))
    assert [(r['loss'], r['repeat'], r['seed']) for r in rows] == [('gift', '0', '0'), ('gift', '1', '1'), ('kl', '0', '0'), ('kl', '1', '1')]
    res = json.loads((tmp_path / 'results.json').read_text())
    assert [s['loss'] for s in res['summary']] == ['gift', 'kl'] and res['config']['epochs'] == 2
    assert res['config']['title'] == 'blobs · IPC 5 · convnet3 · gift · 2 epochs'   # no '?' for the method the set does not record
    for s in res['summary']:
        accs = [float(r['final_acc']) for r in rows if r['loss'] == s['loss']]
        assert abs(s['final_mean'] - sum(accs) / 2) < 1e-9 and 0 <= s['final_mean'] <= 1
    assert [len(r['evals']) for r in res['runs']] == [2, 2, 2, 2]   # tested after epochs 1 and 2
    assert (tmp_path / 'results.png').read_bytes()[:4] == b'\x89PNG'
    out = capsys.readouterr().out
    assert '│ gift │' in out and '│ kl   │' in out and '±' in out and 'test-set selection' in out, out


def test_gift_eval_is_reproducible(files, tmp_path):
    args = ['--loss', 'gift', '--epochs', '2', '--repeats', '1']
    assert gift_eval(base(files, tmp_path / 'a', *args)) == 0 and gift_eval(base(files, tmp_path / 'b', *args)) == 0
    a, b = (json.loads((tmp_path / k / 'results.json').read_text())['runs'][0] for k in 'ab')
    assert a['evals'] == b['evals']


def test_an_interrupted_run_keeps_what_finished(files, tmp_path, monkeypatch, capsys):
    from fastai.learner import Learner
    fit, calls = Learner.fit, []
    def _fit(self, *a, **k):
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt
        return fit(self, *a, **k)
    monkeypatch.setattr(Learner, 'fit', _fit)
    assert gift_eval(base(files, tmp_path, '--loss', 'gift', '--epochs', '2', '--repeats', '3')) == 130   # Ctrl-C: one line, 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'interrupted: every finished run is kept in' in err and '--resume' in err, err
    rows = list(csv.DictReader(open(tmp_path / 'results.csv')))
    assert [r['repeat'] for r in rows] == ['0']                      # the finished run is on disk
    monkeypatch.undo(); fit, calls = Learner.fit, []
    monkeypatch.setattr(Learner, 'fit', lambda self, *a, **k: (calls.append(1), fit(self, *a, **k))[1])
    assert gift_eval(base(files, tmp_path, '--loss', 'gift', '--epochs', '2', '--repeats', '3')) == 0
    assert len(calls) == 2                                            # the same command again: only the two missing runs train
    res = json.loads((tmp_path / 'results.json').read_text())
    assert [r['seed'] for r in res['runs']] == [0, 1, 2] and res['runs'][0]['final_acc'] == float(rows[0]['final_acc'])


def test_lr_and_wd_reach_the_optimizer(files, tmp_path, monkeypatch):
    from fastai.learner import Learner
    fit, seen = Learner.fit, []
    def _fit(self, *a, **k):
        r = fit(self, *a, **k)
        seen.append((type(self.opt.opt).__name__, self.opt.hypers[0]['lr'], self.opt.opt.param_groups[0]['weight_decay']))
        return r
    monkeypatch.setattr(Learner, 'fit', _fit)
    assert gift_eval(base(files, tmp_path, '--loss', 'kl', '--opt', 'sgd', '--lr', '0.02', '--wd', '0.003', '--epochs', '1',
                          '--repeats', '1')) == 0
    assert seen == [('SGD', 0.02, 0.003)]   # the base lr, restored by the schedule after fit
    cfg = json.loads((tmp_path / 'results.json').read_text())['config']
    assert (cfg['opt'], cfg['lr'], cfg['wd']) == ('sgd', 0.02, 0.003)


def test_ipc_takes_the_first_images_of_each_class(files, tmp_path):
    assert gift_eval(base(files, tmp_path, '--loss', 'ce', '--epochs', '1', '--repeats', '1', '--ipc', '2')) == 0
    assert json.loads((tmp_path / 'results.json').read_text())['config']['n_train'] == 8


@pytest.mark.parametrize('extra,msg', [
    (['--loss', 'gift,kll'], "unknown loss 'kll'. Did you mean 'kl'?"),
    (['--arch', 'convnet9'], 'unknown student'),
    (['--arch', 'convnet6'], 'ConvNet-6 needs img_size >= 64'),
    (['--epochs', '0'], '--epochs must be an integer >= 1'),
    (['--opt', 'rmsprop'], 'unknown optimizer'),
    (['--ipc', '9'], '--ipc 9'),
    (['--lr', '0'], '--lr must be a finite number > 0'),
    (['--wd', '-1'], '--wd must be a finite number >= 0'),
])
def test_gift_eval_bad_arguments(files, tmp_path, capsys, extra, msg):
    assert gift_eval(base(files, tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith('gift-eval: error: ') and msg in err and len(err.strip().splitlines()) == 1, err


def test_gift_eval_bad_files(files, tmp_path, capsys):
    assert gift_eval(['--data', str(tmp_path / 'missing.safetensors'), '--out', str(tmp_path)]) == 2
    assert 'no such file or folder' in capsys.readouterr().err
    assert gift_eval(base(files, tmp_path) + ['--teacher', files['wrong']]) == 2   # last --teacher wins: classes permuted
    err = capsys.readouterr().err
    assert 'class' in err and 'order' in err, err
    (tmp_path / 'junk.safetensors').write_bytes(b'junk')
    assert gift_eval(base(files, tmp_path) + ['--teacher', str(tmp_path / 'junk.safetensors')]) == 2


def test_console_scripts(files, tmp_path):
    "The installed commands: --help documents every option; a bad argument is one line, exit code 2, no traceback."
    exe = Path(sys.executable).with_name('gift-eval')
    if not exe.exists(): pytest.skip(f"gift-eval is not installed next to {sys.executable}")
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1')
    h = subprocess.run([str(exe), '--help'], capture_output=True, text=True, env=env, timeout=120)
    assert h.returncode == 0
    for opt in ('--data', '--teacher', '--test', '--arch', '--loss', '--opt', '--lr', '--wd', '--epochs', '--repeats', '--ipc', '--seed',
                '--device', '--bs', '--out'):
        assert opt in h.stdout, opt
    p = subprocess.run([str(exe), *base(files, tmp_path, '--loss', 'nope')], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and 'Traceback' not in p.stderr and "gift-eval: error: unknown loss 'nope'" in p.stderr, p.stderr
    d = subprocess.run([str(exe.with_name('gift-distill')), '--help'], capture_output=True, text=True, env=env, timeout=120)
    assert d.returncode == 0 and '--teacher' in d.stdout
    t = subprocess.run([str(exe.with_name('gift-teacher')), '--help'], capture_output=True, text=True, env=env, timeout=120)
    assert t.returncode == 0 and 'NAME:PATH' in t.stdout and '--overwrite' in t.stdout


def test_gift_distill(files, tmp_path, capsys):
    assert gift_distill(['--data', files['data'], '--method', 'random', '--ipc', '2', '--out', str(tmp_path / 'r.safetensors')]) == 0
    r = DistilledSet.load(tmp_path / 'r.safetensors')
    assert len(r) == 8 and r.meta['method'] == 'random' and r.class_counts.tolist() == [2] * C
    assert gift_distill(['--data', files['data'], '--teacher', files['teacher'], '--ipc', '1', '--factor', '2', '--candidates', '5',
                         '--out', str(tmp_path / 'd.safetensors'), '--folder', str(tmp_path / 'd'), '--store-soft']) == 0
    d = DistilledSet.load(tmp_path / 'd.safetensors')
    assert d.meta['method'] == 'rded' and d.meta['factor'] == 2 and d.soft.shape == (C, C) and d.shape == (1, H, H)
    assert sorted(p.name for p in (tmp_path / 'd').iterdir()) == ['00000', '00001', '00002', '00003']
    assert gift_distill(['--data', files['data'], '--ipc', '1', '--out', str(tmp_path / 'x.safetensors')]) == 2
    assert 'needs --teacher' in capsys.readouterr().err
    before = (tmp_path / 'd.safetensors').read_bytes()                 # an existing set is never replaced silently
    assert gift_distill(['--data', files['data'], '--method', 'random', '--ipc', '2', '--out', str(tmp_path / 'd.safetensors')]) == 2
    assert '--out' in (e := capsys.readouterr().err) and 'add --overwrite' in e and (tmp_path / 'd.safetensors').read_bytes() == before
    assert gift_distill(['--data', files['data'], '--method', 'random', '--ipc', '2', '--out', str(tmp_path / 'd.safetensors'),
                         '--overwrite']) == 0
    assert DistilledSet.load(tmp_path / 'd.safetensors').meta['method'] == 'random'
    assert gift_distill(['--data', files['data'], '--teacher', files['wrong'], '--out', str(tmp_path / 'x.safetensors')]) == 2


# -- the embedded default (made by tools/make_default.py from the real Fashion-MNIST)

def test_embedded_default_contents():
    from gift_fastai.assets import load_default, asset_path, ASSETS
    from gift_fastai.teachers import check_teacher
    dset, teacher, test = load_default()
    assert dset.meta['method'] == 'rded' and dset.meta['ipc'] == 10 and dset.meta['source'] == 'fashion-mnist'
    assert dset.class_counts.tolist() == [10] * 10 and dset.shape == (1, 28, 28) and dset.soft is None
    assert test.class_counts.tolist() == [200] * 10 and test.meta['split'] == 'test' and test.classes == dset.classes
    meta = teacher.teacher_meta
    assert meta['arch'] == 'convnet3' and meta['classes'] == dset.classes and meta['valid_n'] == 10000
    rep = check_teacher(teacher, test, warn=False)       # re-measured here on the 2,000 held-out images
    assert rep.accuracy > 0.85 and abs(rep.accuracy - meta['valid_acc']) < 0.03, (rep.accuracy, meta['valid_acc'])
    assert sum(asset_path(k).stat().st_size for k in ASSETS) <= 5 * 2 ** 20   # the package-data budget


FMNIST = Path('/usr/share/datasets/fashion-mnist')

@pytest.mark.skipif(not FMNIST.is_dir(), reason=f"the real Fashion-MNIST is not in {FMNIST} (apt-get install dataset-fashion-mnist)")
def test_embedded_test_images_are_real_test_images():
    "Every embedded test image is an image of the official test split, with its label (so none was seen in training)."
    from gift_fastai.assets import load_default
    from gift_fastai.datasets import get_dataset
    _, _, test = load_default()
    _, real = get_dataset('fashion-mnist')
    index = {bytes(img.numpy().tobytes()): int(y) for img, y in zip(real.images, real.labels)}
    assert all(index.get(bytes(img.numpy().tobytes())) == int(y) for img, y in zip(test.images, test.labels))


def test_gift_eval_default_runs(tmp_path):
    "What `make demo` runs, cut to one epoch: the embedded set, its teacher and test images, GIFT and KL."
    assert gift_eval(['--epochs', '1', '--repeats', '1', '--out', str(tmp_path)]) == 0
    res = json.loads((tmp_path / 'results.json').read_text())
    assert [s['loss'] for s in res['summary']] == ['gift', 'kl'] and res['config']['n_test'] == 2000


def test_gift_eval_reads_rded_folders_and_data_pt_with_a_named_teacher(tmp_path, capsys):
    "RDED folders and data.pt store class numbers only: they are the teacher's classes (and a grey teacher reads grey images)."
    from PIL import Image
    from gift_fastai.assets import load_default, asset_path, first_per_class
    dset, teacher, test = load_default()
    small = first_per_class(dset, 2)
    for i, (x, y) in enumerate(zip(small.images, small.labels)):  # RDED's layout: {class:05d}/*.png, grey like the teacher
        d = tmp_path / 'rded' / f'{int(y):05d}'; d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[0].numpy(), mode='L').save(d / f'{i}.png')
    torch.save(dict(data=small.images.float() / 255, label=small.labels), tmp_path / 'data.pt')
    first_per_class(test, 5).save(tmp_path / 'test.safetensors')
    for data in [tmp_path / 'rded', tmp_path / 'data.pt']:
        out = tmp_path / f'out-{data.name}'
        rc = gift_eval(['--data', str(data), '--test', str(tmp_path / 'test.safetensors'), '--teacher', str(asset_path('teacher')),
                        '--loss', 'gift', '--epochs', '1', '--repeats', '1', '--out', str(out)])
        assert rc == 0, capsys.readouterr().err
        cfg = json.loads((out / 'results.json').read_text())['config']
        assert (cfg['n_train'], cfg['classes']) == (20, dset.classes)
    # a folder that lacks a class of the teacher is refused, with the counts
    (tmp_path / 'rded' / '00009').rename(tmp_path / 'nine')
    assert gift_eval(['--data', str(tmp_path / 'rded'), '--teacher', str(asset_path('teacher')), '--epochs', '1', '--out', str(tmp_path / 'x')]) == 2
    assert '10 class names given but' in capsys.readouterr().err


@pytest.mark.parametrize('parser', ['gift_fastai.cli:eval_parser', 'gift_fastai.cli:distill_parser',
                                    'gift_fastai.cli:ablate_parser', 'gift_fastai.cli:continual_parser', 'gift_fastai.cli:teacher_parser'])
def test_help_states_each_default_once(parser):
    import importlib, re
    mod, fn = parser.split(':')
    text = ' '.join(getattr(importlib.import_module(mod), fn)().format_help().split())  # argparse wraps lines
    helps = re.split(r'\s--?[\w-]+(?: [A-Z_]+)?\s', text)
    assert not [h for h in helps if h.count('(default') > 1], [h for h in helps if h.count('(default') > 1]
    assert '(default: None)' not in text
    if fn == 'continual_parser': assert '(default: 100)' in text   # --epochs per step
    if fn in ('eval_parser', 'ablate_parser'): assert "protocol's: gift 1000, rded 300" in text   # --epochs: the protocol's


def test_speed_flags_reach_the_learner(files, tmp_path, monkeypatch):
    "--precision/--teacher-precision/--channels-last become the protocol of the run's learner, and the run records them."
    import gift_fastai.engine as E
    seen, orig = [], E.distilled_learner
    def _learner(*a, **k):
        seen.append({x: getattr(k['protocol'], x) for x in ('precision', 'teacher_precision', 'channels_last', 'compile')})
        return orig(*a, **k)
    monkeypatch.setattr(E, 'distilled_learner', _learner)
    assert gift_eval(base(files, tmp_path, '--loss', 'gift', '--epochs', '1', '--repeats', '1', '--precision', 'bf16',
                          '--teacher-precision', 'fp32', '--channels-last', 'off', '--compile', 'default')) == 0
    assert seen == [dict(precision='bf16', teacher_precision='fp32', channels_last=False, compile='default')]
    cfg = json.loads((tmp_path / 'results.json').read_text())['config']
    assert (cfg['precision'], cfg['teacher_precision'], cfg['channels_last'], cfg['compile']) == ('bf16', 'fp32', 'off', 'default')
    seen.clear()
    assert gift_eval(base(files, tmp_path / 'b', '--loss', 'gift', '--epochs', '1', '--repeats', '1')) == 0
    assert seen == [dict(precision='fp32', teacher_precision=None, channels_last=None, compile=None)]   # defaults: auto layout, eager
    (s1,), (s2,) = ([json.loads(r['settings'])['protocol'] for r in csv.DictReader(open(d / 'results.csv'))] for d in (tmp_path, tmp_path / 'b'))
    assert s1['compile'] == 'default' and 'compile' not in s2   # a compiled run is another run; an eager run keeps the key it always had


@pytest.mark.parametrize('command', ['gift_fastai.cli:gift_eval', 'gift_fastai.cli:gift_ablate', 'gift_fastai.cli:gift_continual'])
def test_a_precision_the_device_cannot_run_is_refused_before_anything_is_written(files, tmp_path, capsys, command):
    import importlib
    mod, fn = command.split(':')
    out = tmp_path / 'out'
    args = ['--test', files['test'], '--teacher', files['teacher'], '--out', str(out), '--device', 'cpu', '--precision', 'fp16']
    if fn != 'gift_ablate': args += ['--data', files['data']]
    assert getattr(importlib.import_module(mod), fn)(args) == 2
    err = capsys.readouterr().err
    assert "--precision fp16" in err and "use 'bf16' on the CPU" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize('command', ['gift_fastai.cli:gift_eval', 'gift_fastai.cli:gift_ablate', 'gift_fastai.cli:gift_continual'])
def test_sync_bn_without_cuda_and_a_negative_checkpoint_interval_are_refused(files, tmp_path, capsys, command):
    import importlib
    mod, fn = command.split(':')
    out = tmp_path / 'out'
    args = ['--test', files['test'], '--teacher', files['teacher'], '--out', str(out), '--device', 'cpu']
    if fn != 'gift_ablate': args += ['--data', files['data']]
    f = getattr(importlib.import_module(mod), fn)
    for extra, msg in ((['--sync-bn'], '--sync-bn needs CUDA GPUs'), (['--checkpoint-every', '-1'], '--checkpoint-every must be >= 0')):
        assert f(args + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_a_teacher_that_does_not_label_the_set_is_refused_before_training(files, tmp_path, capsys):
    "Class c stored as class c+1 (an RDED folder numbered from 1, say): gift-eval exits 2 naming the permutation; a teacher at chance too."
    good = DistilledSet.load(files['data'])
    shifted = DistilledSet(good.images, (good.labels + 1) % C, classes=good.classes)
    for name, s in (('set', shifted), ('test', DistilledSet.load(files['test']))):
        s.save(tmp_path / f'{name}.safetensors')
    args = ['--data', str(tmp_path / 'set.safetensors'), '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift',
            '--epochs', '1', '--repeats', '1', '--out', str(tmp_path / 'o')]
    assert gift_eval(args) == 2
    err = capsys.readouterr().err
    assert 'the teacher does not label the distilled set' in err and "data class 'n' (label 0) is teacher output 3" in err, err
    assert '--no-teacher-check' in err and len(err.strip().splitlines()) == 1 and not (tmp_path / 'o').exists()
    assert gift_eval(args + ['--no-teacher-check']) == 0                                  # the user who knows better
    # a teacher at chance on the test set (untrained: as one trained on another dataset would be)
    chance = save_teacher(as_teacher(create_student('convnet3', C, in_ch=1, img_size=H, width=8), good.classes, *good.stats),
                          tmp_path / 'chance.safetensors')
    assert gift_eval(['--data', files['data'], '--test', files['test'], '--teacher', str(chance), '--out', str(tmp_path / 'c')]) == 2
    assert 'the teacher does not label the test set' in capsys.readouterr().err


def test_commands_print_no_import_warning_and_warnings_as_one_line(tmp_path):
    "fastai's import-time FutureWarning is filtered in the commands only; a warning of a run is one line, no echoed source."
    exe = Path(sys.executable).with_name('gift-eval')
    if not exe.exists(): pytest.skip(f"gift-eval is not installed next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
    h = subprocess.run([str(exe), '--help'], capture_output=True, text=True, env=env, timeout=120)
    assert h.returncode == 0 and 'Warning' not in h.stderr, h.stderr
    lib = subprocess.run([sys.executable, '-W', 'default', '-c', 'import gift_fastai.learner'], capture_output=True, text=True,
                         env=env, timeout=120)
    assert 'torch.jit.script' in lib.stderr, lib.stderr   # a library import filters nothing: the filter is the commands'
    from gift_fastai.cli import _warning_line
    assert _warning_line('bad thing', UserWarning, 'x.py', 3, 'source') == 'UserWarning: bad thing\n'


def test_gift_teacher_trains_checks_and_saves(files, tmp_path, capsys):
    "gift-teacher: a teacher trained from the shell, checked on the test set, saved; the other commands take it; never replaced silently."
    from gift_fastai.cli import gift_teacher
    from gift_fastai.teachers import load_teacher
    from conftest import blobs
    train = blobs(20, seed=7).save(tmp_path / 'train.safetensors')
    out = tmp_path / 't.safetensors'
    argv = ['--data', str(train), '--test', files['test'], '--arch', 'convnet3', '--epochs', '6', '--bs', '16', '--lr', '1e-2',
            '--aug', 'none', '--device', 'cpu', '--out', str(out)]
    assert gift_teacher(argv) == 0, capsys.readouterr().err
    raw = capsys.readouterr().out; printed = ' '.join(raw.split())   # (rich wraps long lines)
    assert 'augmentation none (given)' in printed and 'check on 40 test images' in printed and 'wrote' in printed, printed
    assert 'epoch 6/6' in printed and '\r' not in raw   # pytest's capture is not a terminal: one line per epoch
    t = load_teacher(out)
    assert t.teacher_meta['valid_acc'] > 0.9 and t.teacher_meta['aug'] is None
    assert gift_eval(base(files, tmp_path / 'ev', '--teacher', str(out), '--loss', 'gift', '--epochs', '1', '--repeats', '1')) == 0
    before = out.read_bytes()
    assert gift_teacher(argv) == 2 and 'add --overwrite' in capsys.readouterr().err
    assert out.read_bytes() == before
    shifted = DistilledSet.load(files['test']); shifted.labels = (shifted.labels + 1) % C   # class c filed as c+1
    bad = argv[:2] + ['--test', str(shifted.save(tmp_path / 'shifted.safetensors'))] + argv[4:-2] + ['--out', str(tmp_path / 'bad.safetensors')]
    assert gift_teacher(bad) == 2
    err = capsys.readouterr().err
    assert 'fails its check (near chance, class order): not saved' in err, err
    assert not (tmp_path / 'bad.safetensors').exists()
    assert gift_teacher(['--data', str(train), '--out', str(tmp_path / 'x.safetensors')]) == 2
    assert '--test is needed' in capsys.readouterr().err


def test_summaries_as_markdown_and_latex(files, tmp_path):
    "gift-eval writes its table as results.md and results.tex, percentages with two decimals and no float noise."
    assert gift_eval(base(files, tmp_path, '--loss', 'gift,kl', '--epochs', '1', '--repeats', '2')) == 0
    md, tex = (tmp_path / 'results.md').read_text(), (tmp_path / 'results.tex').read_text()
    res = json.loads((tmp_path / 'results.json').read_text())
    for s in res['summary']:
        cell = f"{100 * s['final_mean']:.2f} ± {100 * s['final_std']:.2f}"
        assert cell in md and cell.replace('±', '$\\pm$') in tex, (cell, md)
        assert len(repr(s['final_mean'])) <= 8, s   # rounded where it is made: 0.9, not 0.8999999999999
    # loss, final, best, the paired difference against the native loss (gift), p, seeds needed, runs, seconds
    assert md.count('\n| ') == 3 and '\\begin{tabular}{lrrrrrrr}' in tex and '\\toprule' in tex


def test_fit_lets_a_large_student_take_small_images(files, tmp_path, capsys):
    "--fit pad: resnet18 (built for >= 32 px) trains on 16 px images, padded inside the model; without it, refused before training."
    assert gift_eval(base(files, tmp_path / 'a', '--arch', 'resnet18', '--loss', 'kl', '--epochs', '1', '--repeats', '1')) == 2
    assert "--fit in the commands" in capsys.readouterr().err
    assert gift_eval(base(files, tmp_path / 'b', '--arch', 'resnet18', '--fit', 'pad', '--loss', 'kl', '--epochs', '1', '--repeats', '1')) == 0
    row = next(csv.DictReader(open(tmp_path / 'b' / 'results.csv')))
    assert row['arch'] == 'resnet18' and 0 <= float(row['final_acc']) <= 1


def test_overall_time_left_in_the_finished_run_lines():
    "RichReport: each finished run's line says how many runs are done and the time left for all, at the pace so far."
    import io
    from rich.console import Console
    from gift_fastai.cli import RichReport
    from types import SimpleNamespace
    now = [0.0]
    con = Console(file=io.StringIO(), width=200, force_terminal=False)
    run = SimpleNamespace(result=None, protocol=SimpleNamespace(epochs=10))
    with RichReport(con, 'runs', lambda r, row: 'run done', clock=lambda: now[0]) as rep:
        rep('plan', total=3, todo=3, epochs=30, device='cpu')
        for i in range(2):
            rep('start', index=i, run=run)
            for _ in range(10): now[0] += 6; rep('epoch', index=i, epoch=0)
            rep('end', index=i, run=run, row={})
    text = con.file.getvalue()
    assert 'run done · 1/3 run(s) done, about 2 min left' in text, text   # 20 epochs left at 6 s
    assert 'run done · 2/3 run(s) done, about 60 s left' in text, text


def test_gift_eval_reads_an_sre2l_family_folder(files, tmp_path, capsys):
    "--data takes an SRe2L/CDA/G-VBSM/EDC folder (new{c:03d}/class{c:03d}_id{k:03d}.png), detected from its layout."
    from PIL import Image
    dset = DistilledSet.load(files['data'])
    for i, (img, c) in enumerate(zip(dset.images, dset.labels.tolist())):
        d = tmp_path / 'syn' / f'new{c:03d}'; d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(d / f'class{c:03d}_id{i % 5:03d}.png')
    argv = ['--data', str(tmp_path / 'syn'), '--test', files['test'], '--teacher', files['teacher'], '--loss', 'kl', '--epochs', '1',
            '--repeats', '1']
    assert gift_eval(argv + ['--out', str(tmp_path / 'a')]) == 0, capsys.readouterr().err
    cfg = json.loads((tmp_path / 'a' / 'results.json').read_text())['config']
    assert cfg['n_train'] == len(dset) and cfg['classes'] == dset.classes   # class names from the teacher, in its order
    assert gift_eval(argv + ['--format', 'rded', '--out', str(tmp_path / 'b')]) == 2
    assert "layout 'sre2l' (format sre2l)" in capsys.readouterr().err


def _datm_folder(files, tmp_path):
    "DATM's save folder in its exact layout (class-major float32 images whitened by a ZCA fitted on real images, float32 logits, a 0-dim lr) and that real set."
    from conftest import blobs
    from gift_fastai.data import ZCAWhiten
    dset, real = DistilledSet.load(files['data']), blobs(20, seed=2)
    zca = ZCAWhiten.fit(real)
    order = torch.argsort(dset.labels, stable=True)
    d = tmp_path / 'logged_files' / 'blobs' / '5' / 'ConvNet' / 'run' / 'Normal'; d.mkdir(parents=True)
    torch.save(zca.whiten(dset.images[order].float() / 255), d / 'images_best.pt')
    torch.save(torch.randn(len(dset), dset.n_classes, generator=torch.Generator().manual_seed(0)), d / 'labels_best.pt')
    torch.save(torch.tensor(0.03), d / 'lr_best.pt')
    return d, real.save(tmp_path / 'real.safetensors')


def test_gift_eval_trains_a_datm_set_as_datm_does(files, tmp_path, capsys):
    "--data takes DATM's folder; --protocol datm trains at its learned lr on its logits and whitens the test images with a ZCA fitted on --real."
    d, real = _datm_folder(files, tmp_path)
    argv = ['--data', str(d), '--test', files['test'], '--protocol', 'datm', '--loss', 'softce', '--epochs', '2', '--repeats', '1']
    assert gift_eval(argv + ['--real', str(real), '--out', str(tmp_path / 'a')]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'a' / 'results.csv')))
    assert len(rows) == 1 and rows[0]['protocol'] == 'datm' and rows[0]['opt'] == 'sgd' and abs(float(rows[0]['lr']) - 0.03) < 1e-6
    s = json.loads(rows[0]['settings'])
    assert s['protocol']['norm'] == 'zca' and s['protocol']['set_lr'] and 'zca' in s and rows[0]['teacher'] == 'stored'
    cfg = json.loads((tmp_path / 'a' / 'results.json').read_text())['config']
    assert cfg['classes'] == ['n', 'e', 's', 'w'] and cfg['n_train'] == 20   # numbered classes named by the test set (no teacher)
    assert gift_eval(argv + ['--out', str(tmp_path / 'b')]) == 2
    assert 'give them with --real' in capsys.readouterr().err
    assert gift_eval(base(files, tmp_path / 'c', '--real', str(real), '--epochs', '1', '--repeats', '1')) == 2
    assert 'drop --real' in capsys.readouterr().err


def test_gift_ablate_runs_datm_beside_another_protocol(files, tmp_path, capsys):
    "--protocol datm is an axis of a grid like any other: the whitening is fitted once on --real and given to its cells only."
    from gift_fastai.cli import gift_ablate
    d, real = _datm_folder(files, tmp_path)
    argv = ['--data', f'datm={d}', '--test', files['test'], '--teacher', files['teacher'], '--loss', 'softce', '--epochs', '1',
            '--repeats', '1', '--no-teacher-check']
    assert gift_ablate(argv + ['--protocol', 'datm', '--real', str(real), '--out', str(tmp_path / 'a')]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'a' / 'results.csv')))
    assert [r['protocol'] for r in rows] == ['datm'] and 'zca' in json.loads(rows[0]['settings'])
    assert gift_ablate(argv + ['--protocol', 'datm', '--out', str(tmp_path / 'b')]) == 2
    assert 'give them with --real' in capsys.readouterr().err
