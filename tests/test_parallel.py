"""Many runs at once (`gift_fastai.parallel`): a grid's runs on local worker processes, on a Dask LocalCluster and on submitit's
local executor give the rows a sequential run gives (at the same CPU threads per run: float sums depend on the count); a
parallel grid killed mid-run (the whole process group, as a scheduler kills a job) continues with --resume."""
import csv, os, signal, subprocess, time
import pytest
from gift_fastai.cli import gift_ablate, gift_eval
from gift_fastai.parallel import slots

from conftest import blobs  # noqa: F401  (and the `files` fixture of conftest.py)
from test_resume import ENV, exe, pths

THREADS = str(len(slots(2, 'cpu')[0]['cores']))  # (a worker's share of this machine's cores: the sequential reference uses as many)


def args(files, out, *extra, epochs=3):
    return ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift,kl', '--epochs', str(epochs),
            '--eval-every', '1', '--repeats', '2', '--out', str(out), *extra]


def table(out):
    "What a run's result is: its key, accuracies, tests over epochs and per-class accuracy (not its time or its worker)."
    return sorted((r['key'], r['final_acc'], r['best_acc'], r['evals'], r['per_class'], r['threads']) for r in csv.DictReader(open(out / 'results.csv')))


@pytest.fixture(scope='module')
def reference(files, tmp_path_factory):
    "The grid run here, one run after another, at a worker's threads."
    out = tmp_path_factory.mktemp('seq') / 'g'
    assert gift_ablate(args(files, out, '--threads', THREADS)) == 0
    return table(out)


@pytest.mark.parametrize('executor', ['local', 'dask', 'submitit-local'])
def test_a_grid_on_an_executor_has_the_rows_of_a_sequential_grid(files, tmp_path, reference, executor):
    if executor == 'dask': pytest.importorskip('distributed')
    if executor == 'submitit-local': pytest.importorskip('submitit')
    assert gift_ablate(args(files, tmp_path / 'p', '--jobs', '2', '--executor', executor)) == 0
    got = table(tmp_path / 'p')
    assert len(got) == 4 and got == reference
    if executor == 'submitit-local': assert any((tmp_path / 'p' / 'submitit').iterdir())   # its logs, next to the results
    before = (tmp_path / 'p' / 'results.csv').read_text()
    assert gift_ablate(args(files, tmp_path / 'p', '--jobs', '2', '--executor', executor)) == 0   # every row found: nothing trains
    assert (tmp_path / 'p' / 'results.csv').read_text() == before


def test_gift_eval_takes_jobs(files, tmp_path):
    e = lambda out, *x: ['--data', files['data'], '--test', files['test'], '--teacher', files['teacher'], '--loss', 'gift,kl', '--epochs', '2',
                         '--repeats', '2', '--out', str(out), *x]
    assert gift_eval(e(tmp_path / 'p', '--jobs', '2')) == 0 and gift_eval(e(tmp_path / 's', '--threads', THREADS)) == 0
    assert table(tmp_path / 'p') == table(tmp_path / 's') and len(table(tmp_path / 's')) == 4


def test_bad_parallel_settings_are_refused(files, tmp_path, capsys):
    assert gift_ablate(args(files, tmp_path / 'a', '--jobs', '0')) == 2 and '--jobs must be' in capsys.readouterr().err
    assert gift_ablate(args(files, tmp_path / 'b', '--jobs', '2', '--executor', 'ray')) == 2 and 'unknown executor' in capsys.readouterr().err
    assert gift_ablate(args(files, tmp_path / 'c', '--executor', 'slurm:partition')) == 2 and 'KEY=VALUE' in capsys.readouterr().err
    if not __import__('shutil').which('srun'):
        assert gift_ablate(args(files, tmp_path / 'd', '--executor', 'slurm:timeout_min=5')) == 2 and 'not on this machine' in capsys.readouterr().err


def kill_once_checkpointed(cmd, out):
    "Start the command `cmd` in a process group of its own and kill the whole group (as a scheduler kills a job) once a checkpoint is in `out`."
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.time()
    while not pths(out / 'checkpoints'):
        assert p.poll() is None, f"the grid ended (rc {p.returncode}) before it could be killed: {p.stderr.read()[-2000:]}"
        assert time.time() - t0 < 300, "no run wrote a checkpoint"
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL); p.wait()


def test_a_killed_parallel_grid_resumes(files, tmp_path):
    "Four runs of 30 epochs on two workers, the whole process group killed once checkpoints are written; --resume finishes the grid."
    out, E = tmp_path / 'killed', 30
    kill_once_checkpointed([exe('gift-ablate'), *args(files, out, '--jobs', '2', '--checkpoint-every', '3', epochs=E)], out)
    done = len(list(csv.DictReader(open(out / 'results.csv')))) if (out / 'results.csv').exists() else 0
    assert done < 4
    assert gift_ablate(args(files, out, '--jobs', '2', '--checkpoint-every', '3', '--resume', epochs=E)) == 0
    left = sorted(str(f.relative_to(out)) for f in (out / 'checkpoints').rglob('*')) if (out / 'checkpoints').exists() else []
    assert not (out / 'checkpoints').exists(), left   # (nothing left: a write the kill interrupted goes with its finished run)
    assert gift_ablate(args(files, tmp_path / 'ref', '--threads', THREADS, epochs=E)) == 0   # never stopped, one after another
    assert table(out) == table(tmp_path / 'ref') and len(table(out)) == 4


def test_the_gpu_check_says_so_without_a_gpu():
    "`make gpu-check` on a machine without CUDA: one line that says so, exit 0, nothing written."
    import sys, torch
    from pathlib import Path
    if torch.cuda.is_available(): pytest.skip("a GPU is here: `make gpu-check` measures it (minutes), not a unit test")
    root = Path(__file__).resolve().parents[1]
    before = sorted((root / 'bench' / 'results').glob('gpu-*.json'))
    r = subprocess.run([sys.executable, str(root / 'bench' / 'gpu_check.py')], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'no CUDA GPU on this machine' in r.stdout, (r.stdout, r.stderr)
    assert sorted((root / 'bench' / 'results').glob('gpu-*.json')) == before


def test_the_gpu_check_runs_every_part_at_toy_sizes():
    """`gpu_check.py --selftest`: every part of the GPU check, at toy sizes on the CPU, runs without an error (the GPU days are
    rare: a script broken by a change of the library would waste one) and writes the figures the README reads."""
    import json, re, shutil, sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / 'bench' / 'gpu_check.py'), '--selftest'], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1'))
    assert r.returncode == 0, r.stderr[-3000:]
    f = Path(re.search(r'wrote (\S+gpu-check\.json)', r.stdout).group(1))
    try: res = json.loads(f.read_text())
    finally: shutil.rmtree(f.parent.parent, ignore_errors=True)   # (the self-test's temporary folder)
    parts = ('bench', 'cuda_tests', 'checkpoint_cuda_to_cpu', 'nccl', 'runs_per_gpu', 'levers', 'accuracy_gpu_vs_cpu')
    assert not {p: res[p]['error'] for p in parts if 'error' in res.get(p, {})} and all(p in res for p in parts), res
    assert set(res['bench']['cases']) == {'fp32', 'fp32-compile-default'} and res['bench']['compiled_over_eager']
    assert res['checkpoint_cuda_to_cpu']['resumed_on'] == 'cpu' and res['runs_per_gpu']['by_jobs']['1']['vs_one'] == 1.0
    assert res['runs_per_gpu']['stacked_3_seeds']['1']['runs'] == 3 and res['runs_per_gpu']['stacked_3_seeds']['1']['vs_unstacked'] > 0
    assert 'paper_grid' in res and res['paper_grid']['runs'] == 24


def test_stacked_seeds_on_the_command_line_here_and_on_workers(files, tmp_path, reference):
    """--stack-seeds: each cell's two seeds train as one stack (here, and as one future each on two workers: the same rows); the rows are the
    runs', their keys marked, their tests those of the runs trained one by one (the same batches and steps, up to rounding)."""
    assert gift_ablate(args(files, tmp_path / 's', '--stack-seeds', '--threads', THREADS)) == 0
    here = table(tmp_path / 's')
    rows = list(csv.DictReader(open(tmp_path / 's' / 'results.csv')))
    assert len(rows) == 4 and sorted((r['loss'], r['seed']) for r in rows) == [('gift', '0'), ('gift', '1'), ('kl', '0'), ('kl', '1')]
    assert all(__import__('json').loads(r['settings'])['protocol']['stack_seeds'] for r in rows)
    assert {k for k, *_ in here}.isdisjoint({k for k, *_ in reference})   # a stacked run is recorded as such: not taken for an unstacked one
    ref = {(r[1], r[2], r[3]) for r in reference}
    assert sum((r[1], r[2], r[3]) in ref for r in here) >= 2, (here, reference)   # most runs test exactly as when trained alone
    assert gift_ablate(args(files, tmp_path / 'p', '--stack-seeds', '--jobs', '2')) == 0
    assert table(tmp_path / 'p') == here


def test_a_killed_stack_resumes(files, tmp_path):
    """A stacked grid killed once its checkpoints are written continues with --resume to the rows of a stacked grid never stopped: the stack's
    checkpoint holds every student's weights, optimizer state, shuffles and augmentation draws."""
    out, E = tmp_path / 'killed', 30
    kill_once_checkpointed([exe('gift-ablate'), *args(files, out, '--stack-seeds', '--checkpoint-every', '3', '--threads', THREADS, epochs=E)], out)
    assert (len(list(csv.DictReader(open(out / 'results.csv')))) if (out / 'results.csv').exists() else 0) < 4
    assert gift_ablate(args(files, out, '--stack-seeds', '--checkpoint-every', '3', '--threads', THREADS, '--resume', epochs=E)) == 0
    assert not (out / 'checkpoints').exists()
    assert gift_ablate(args(files, tmp_path / 'ref', '--stack-seeds', '--threads', THREADS, epochs=E)) == 0
    assert table(out) == table(tmp_path / 'ref') and len(table(out)) == 4
