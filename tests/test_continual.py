"gift-continual end to end on toy files: a run killed mid-step and resumed, the CSV, table and plot, GDumb's memory, and bad input."
import csv, os, signal, subprocess, sys, time
import pandas as pd, pytest
from PIL import Image
from gift_fastai.cli import gift_continual
from gift_fastai.continual import ClassIncremental
from gift_fastai.engine import ResultsStore, COLUMNS
from gift_fastai.data import DistilledSet
from conftest import blobs

LOSSES = ['gift', 'kl']
STEPS = 3  # 4 classes: tasks of 2, 1 and 1 classes


def args(files, out, *extra):
    return ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--out', str(out), *extra]


def rows_of(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))


def key(r): return r['key']

def read_continual(path): return pd.DataFrame(ResultsStore(path.parent).rows())  # (as the file writes them: strings)


def test_killed_run_resumes_at_the_first_unfinished_step(files, tmp_path, capsys):
    out = tmp_path / 'run'; csv_path = out / 'results.csv'
    run_args = args(files, out, '--steps', str(STEPS), '--loss', ','.join(LOSSES), '--epochs', '30', '--repeats', '1',
                    '--checkpoint-every', '0')  # (a step killed mid-way starts over: its checkpoint is test_resume's)
    cmd = [sys.executable, '-c', 'import sys; from gift_fastai.cli import gift_continual_main; '
           'sys.argv[0] = "gift-continual"; gift_continual_main()', *run_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1'))
    t0 = time.time()
    while time.time() - t0 < 300:  # kill as soon as the first step is on disk: the second is being trained
        if csv_path.exists() and len(rows_of(csv_path)) >= 1: break
        if proc.poll() is not None: pytest.fail(f"gift-continual ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    before = rows_of(csv_path)
    n = len(LOSSES) * STEPS
    assert 1 <= len(before) < n, f"the kill came too late to test a resume ({len(before)} of {n} steps finished)"
    capsys.readouterr()
    assert gift_continual(run_args) == 0
    printed = ' '.join(capsys.readouterr().out.split())   # (rich wraps lines)
    after = rows_of(csv_path)
    assert after[:len(before)] == before                                  # finished steps untouched
    assert f"{len(before)} finished" in printed and f"{n - len(before)} to run" in printed   # ... and not trained again
    assert len(after) == n and len({key(r) for r in after}) == n          # every step once
    with open(csv_path, newline='') as f: assert next(csv.reader(f)) == list(COLUMNS)
    order = ClassIncremental(4, STEPS, seed=0).order
    for r in after:
        s = int(r['step'])
        assert r['classes_seen'] == str([2, 3, 4][s - 1]) and r['memory_size'] == str(5 * [2, 3, 4][s - 1])   # 5 images per class
        assert r['n_test'] == str(10 * [2, 3, 4][s - 1])                 # the seen classes' 10 test images each
        assert r['order'] == ' '.join(map(str, order)) and r['memory'] == 'distilled' and r['budget'] == '' and r['stream'] == ''
        assert (r['data'], r['test'], r['teacher']) == (files['data'], files['test'], files['teacher'])
        assert (r['arch'], r['opt'], r['lr'], r['wd'], r['epochs'], r['steps'], r['repeat'], r['seed']) == \
               ('convnet3', 'adamw', '0.001', '0.0001', '30', str(STEPS), '0', '0')
        assert 0 <= float(r['final_acc']) <= 1 and float(r['final_acc']) == float(r['best_acc']) and float(r['seconds']) > 0
        assert r['device'] == 'cpu' and r['torch'] and r['fastai'] and r['gift_fastai'] and r['finished']
    assert sorted((r['loss'], r['step']) for r in after) == sorted((l, str(s)) for l in LOSSES for s in range(1, STEPS + 1))
    # the resumed rows are those an uninterrupted run gives (every step is seeded on its own)
    assert gift_continual(args(files, tmp_path / 'whole', '--steps', str(STEPS), '--loss', ','.join(LOSSES), '--epochs', '30',
                               '--repeats', '1')) == 0
    whole = {key(r): r['final_acc'] for r in rows_of(tmp_path / 'whole' / 'results.csv')}
    assert {key(r): r['final_acc'] for r in after} == whole
    # the table: a row per step, a column per loss, the mean; the plot
    table = capsys.readouterr().out
    for word in ('step', 'classes seen', 'memory', *LOSSES, 'mean'): assert word in table, word
    png = out / 'accuracy_vs_classes.png'
    assert Image.open(png).format == 'PNG'


def test_gdumb_memory_from_a_stream(files, tmp_path):
    stream = blobs(20, seed=3).save(tmp_path / 'stream.safetensors')      # 80 real-like images, 20 per class
    out = tmp_path / 'g'
    assert gift_continual(args(files, out, '--memory', 'gdumb', '--budget', '6', '--stream', str(stream), '--steps', '3',
                               '--loss', 'kl', '--epochs', '2', '--repeats', '2')) == 0
    rows = read_continual(out / 'results.csv')
    assert rows.memory_size.tolist() == ['6'] * 6 and rows.budget.tolist() == ['6'] * 6
    assert rows.stream.tolist() == [str(stream)] * 6 and rows.memory.tolist() == ['gdumb'] * 6
    assert rows.classes_seen.tolist() == ['2', '3', '4'] * 2 and rows.seed.tolist() == ['0'] * 3 + ['1'] * 3
    # default budget: the distilled set's size, streamed from the distilled set itself
    assert gift_continual(args(files, tmp_path / 'd', '--memory', 'gdumb', '--steps', '1', '--loss', 'kl', '--epochs', '1',
                               '--repeats', '1')) == 0
    d = read_continual(tmp_path / 'd' / 'results.csv')
    assert d[['budget', 'memory_size', 'stream']].values.tolist() == [['20', '20', files['data']]]


def test_bad_input_fails_early_with_one_line(files, tmp_path, capsys):
    other = DistilledSet(blobs(2).images, blobs(2).labels, classes=['a', 'b', 'c', 'd']).save(tmp_path / 'other.safetensors')
    bad = [(['--loss', 'gfit'], "'gift'"),
           (['--loss', ','], '--loss is empty'),
           (['--memory', 'gdump'], "Did you mean 'gdumb'"),
           (['--budget', '5'], '--memory gdumb only'),
           (['--stream', files['data']], '--memory gdumb only'),
           (['--memory', 'gdumb', '--budget', '0'], '--budget must be >= 1'),
           (['--steps', '5'], 'steps (at most one per class) must be an integer >= 1 and <= 4'),
           (['--steps', '0'], '--steps must be >= 1'),
           (['--epochs', '0'], '--epochs must be an integer >= 1'),
           (['--repeats', '0'], '--repeats must be an integer >= 1'),
           (['--opt', 'lamb'], 'lamb'),
           (['--arch', 'convnet9'], 'convnet'),
           (['--lr', '0'], '--lr must be a finite number > 0'),
           (['--device', 'nodevice'], "--device 'nodevice'"),
           (['--teacher', files['wrong']], 'class'),
           (['--data', str(tmp_path / 'missing.safetensors')], 'missing.safetensors'),
           (['--memory', 'gdumb', '--stream', str(tmp_path / 'nope.safetensors')], 'nope.safetensors'),
           (['--memory', 'gdumb', '--stream', str(other)], '--stream has classes')]
    for extra, msg in bad:
        a = args(files, tmp_path / 'x', '--epochs', '1', '--repeats', '1', '--steps', '2')
        assert gift_continual(a + extra) == 2, extra
        err = capsys.readouterr().err
        assert msg in err and err.count('\n') == 1, (extra, err)
    assert not (tmp_path / 'x' / 'results.csv').exists()                 # nothing trained
    (tmp_path / 'z').mkdir(); (tmp_path / 'z' / 'results.csv').write_text('loss,acc\nkl,0.5\n')
    assert gift_continual(args(files, tmp_path / 'z', '--epochs', '1', '--repeats', '1', '--steps', '2')) == 2
    assert 'start anew with another --out' in capsys.readouterr().err
