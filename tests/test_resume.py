"""Killed runs continue where they stopped. Each command runs as a real process, is killed with SIGKILL once it has
written a checkpoint (mid-run), and is continued with --resume; the continued run trains only what was left and ends
with exactly the results of a run that was never stopped (CPU)."""
import csv, json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from fastai.learner import Learner
from gift_fastai.checkpoint import load_checkpoint
from gift_fastai.cli import gift_eval, gift_distill, gift_ablate, gift_continual
from gift_fastai.assets import asset_path
from gift_fastai.data import DistilledSet

ENV = dict(os.environ, OMP_NUM_THREADS='1', NO_ALBUMENTATIONS_UPDATE='1')


@pytest.fixture(autouse=True)
def one_thread():
    """This process computes with one thread, as the killed processes (ENV) do: float sums depend on the thread count, so a run is
    bit for bit the same only at the same count (the killed run's first epochs and the reference's must agree)."""
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def exe(name):
    p = Path(sys.executable).with_name(name)
    if not p.exists(): pytest.skip(f"{name} not found next to {sys.executable}")
    return str(p)


def kill_when(cmd, ready, timeout=240):
    "Run `cmd`; SIGKILL it as soon as `ready()` holds. Fails if it ended first (then nothing was interrupted)."
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ready():
        assert p.poll() is None, f"the run ended (rc {p.returncode}) before it could be killed: {p.stderr.read()[-2000:]}"
        assert time.time() - t0 < timeout, "the run never wrote a checkpoint"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, p.returncode   # killed mid-run, not finished


@pytest.fixture
def epochs_trained(monkeypatch):
    "Count the training epochs this process runs (the skipped ones of a resumed fit do not train)."
    n, orig = [0], Learner._do_epoch_train
    def _train(self, *a, **k): n[0] += 1; return orig(self, *a, **k)
    monkeypatch.setattr(Learner, '_do_epoch_train', _train)
    return n


def pths(folder):
    "The checkpoint files under `folder` (the run may remove the folder while we look: then none)."
    try: return sorted(Path(folder).rglob('*.pth'))
    except FileNotFoundError: return []


def test_gift_eval_resumes_a_killed_run(files, tmp_path, epochs_trained, capsys):
    E = 30
    args = lambda out: ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift',
                        '--epochs', str(E), '--repeats', '2', '--eval-every', '3', '--checkpoint-every', '4', '--out', str(out)]
    out = tmp_path / 'killed'
    def ready():  # repeat 0 finished and recorded, repeat 1 checkpointed mid-way
        f = out / 'results.csv'
        return f.exists() and len(f.read_text().splitlines()) == 2 and bool(pths(out / 'checkpoints'))
    kill_when([exe('gift-eval'), *args(out)], ready)
    assert [r['seed'] for r in csv.DictReader(open(out / 'results.csv'))] == ['0']
    ck = pths(out / 'checkpoints'); assert len(ck) == 1 and ck[0].name == 'run.pth'
    k = load_checkpoint(ck[0])['epoch']
    assert 4 <= k < E and k % 4 == 0

    assert gift_eval(args(out)) == 2                                   # without --resume the killed run's work is protected
    assert 'killed mid-way: resume them (--resume' in capsys.readouterr().err
    assert pths(out / 'checkpoints') == ck
    epochs_trained[0] = 0
    assert gift_eval(args(out) + ['--resume']) == 0
    assert "continuing run 2 from its checkpoint" in capsys.readouterr().out
    assert epochs_trained[0] == E - k                                  # only what was left of repeat 1
    assert not (out / 'checkpoints').exists()                          # finished runs leave no checkpoint

    assert gift_eval(args(tmp_path / 'ref')) == 0                      # the same run, never stopped
    got, ref = (json.loads((d / 'results.json').read_text()) for d in (out, tmp_path / 'ref'))
    assert [(r['repeat'], r['evals'], r['final_acc'], r['best_acc']) for r in got['runs']] == \
           [(r['repeat'], r['evals'], r['final_acc'], r['best_acc']) for r in ref['runs']]
    assert len(ref['runs'][1]['evals']) == 10 and got['summary'][0]['final_mean'] == ref['summary'][0]['final_mean']


def test_gift_distill_resumes_a_killed_rded_run(tmp_path, capsys):
    "RDED on the embedded Fashion-MNIST test images (10 classes) with the embedded teacher, killed after two classes."
    args = lambda out: ['--data', str(asset_path('test')), '--teacher', str(asset_path('teacher')), '--ipc', '2',
                        '--candidates', '200', '--crops', '8', '--store-soft', '--out', str(out)]
    out = tmp_path / 'killed.safetensors'; parts = tmp_path / 'killed.safetensors.parts'
    kill_when([exe('gift-distill'), *args(out)], lambda: len(list(parts.glob('class*.pt'))) >= 2)
    assert not out.exists()
    n_done = len(list(parts.glob('class*.pt'))); assert 2 <= n_done < 10
    assert gift_distill(args(out)) == 2 and 'add --resume' in capsys.readouterr().err
    assert gift_distill(args(out) + ['--seed', '1', '--resume']) == 2   # another seed: refused
    assert 'seed=0' in capsys.readouterr().err
    assert gift_distill(args(out) + ['--resume']) == 0
    assert not parts.exists()
    assert gift_distill(args(tmp_path / 'ref.safetensors')) == 0
    a, b = DistilledSet.load(out), DistilledSet.load(tmp_path / 'ref.safetensors')
    assert torch.equal(a.images, b.images) and torch.equal(a.soft, b.soft) and torch.equal(a.labels, b.labels)
    assert a.meta == b.meta


@pytest.mark.parametrize('name,command,extra,key', [
    ('gift-ablate', gift_ablate, ['--loss', 'gift,kl'], lambda r: (r['loss'], r['final_acc'], r['best_acc'])),
    ('gift-continual', gift_continual, ['--loss', 'gift', '--steps', '2'], lambda r: (r['step'], r['final_acc'], r['best_acc'])),
])
def test_grid_commands_resume_a_killed_run(files, tmp_path, epochs_trained, name, command, extra, key):
    "Two runs of 40 epochs (two losses; two steps); killed in one of them, continued with --resume."
    E = 40
    args = lambda out: ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], *extra,
                        '--epochs', str(E), '--repeats', '1', '--checkpoint-every', '3', '--out', str(out)]
    out = tmp_path / 'killed'
    kill_when([exe(name), *args(out)], lambda: bool(pths(out / 'checkpoints')))
    k = load_checkpoint(pths(out / 'checkpoints')[0])['epoch']
    rows = list(csv.DictReader(open(out / 'results.csv'))) if (out / 'results.csv').exists() else []
    epochs_trained[0] = 0
    assert command(args(out) + ['--resume']) == 0
    assert epochs_trained[0] == 2 * E - len(rows) * E - k              # the unfinished run continued from epoch k
    assert not (out / 'checkpoints').exists()
    assert command(args(tmp_path / 'ref')) == 0                        # the same, never stopped
    table = lambda d: sorted(key(r) for r in csv.DictReader(open(d / 'results.csv')))
    assert table(out) == table(tmp_path / 'ref') and len(table(out)) == 2
