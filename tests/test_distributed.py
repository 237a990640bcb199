"""distilled_learner inside fastai's distributed context: two CPU processes (torchrun, gloo). One launch runs
tests/_dist_checks.py (sharding, relabelling, exact metrics, no validation set, the SyncBatchNorm refusal); another runs
`gift-eval` itself under torchrun and is compared with the same evaluation in one process."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

HERE = Path(__file__).parent
ENV = dict(os.environ, OMP_NUM_THREADS='1', NO_ALBUMENTATIONS_UPDATE='1')


def torchrun(*args, timeout=600):
    exe = Path(sys.executable).with_name('torchrun')
    if not exe.exists(): pytest.skip(f"torchrun not found next to {sys.executable}")
    p = subprocess.run([str(exe), '--standalone', '--nproc_per_node', '2', *map(str, args)], env=ENV, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    torchrun(HERE / '_dist_checks.py', out)
    return [json.loads((out / f'rank{r}.json').read_text()) for r in (0, 1)]


def test_each_rank_relabels_its_own_shard(ranks):
    for r in ranks:
        assert r['world'] == 2 and r['wrapped'] == 'DistributedDataParallel' and r['unwrapped'] == 'ConvNet', r
        assert r['batches'] == [3, 3, 3] and r['batch_sizes'] == [10, 10, 2]   # 43 images → 22 per rank, bs 10 per process
        assert r['max_soft_err'] < 1e-5               # the soft slot holds the teacher's logits on this rank's batch
        assert r['labels_ok'] and r['teacher_unchanged'] and r['teacher_device'] == 'cpu'
        assert r['logger_back']                       # fastai left rank 1 silent for good; the library gives the logger back


def test_shards_cover_the_set_with_fastais_padding_only(ranks):
    for e in range(3):
        a, b = ranks[0]['ids'][e], ranks[1]['ids'][e]
        both = sorted(a + b)
        assert len(both) == 44 and set(both) == set(range(43))      # every image, each once ...
        dup = [i for i in set(both) if both.count(i) > 1]
        assert len(dup) == 1                                       # ... but one: the pad to a multiple of 2 processes
        assert len(set(a)) == len(a) and len(set(b)) == len(b)


def test_metrics_are_exact_on_every_rank(ranks):
    for r in ranks:
        assert r['reported_acc'] == pytest.approx(r['exact_acc'], abs=1e-7)   # a count over the 101 images, not 102
        assert r['single_acc'] == pytest.approx(r['exact_acc'], abs=1e-7) and round(r['exact_acc'] * 101, 4) % 1 == 0
        assert r['reported_loss'] == pytest.approx(r['exact_loss'], rel=1e-5)
    assert ranks[0]['exact_acc'] == ranks[1]['exact_acc']


def test_both_ranks_end_with_the_same_weights(ranks):
    assert ranks[0]['weights'] == pytest.approx(ranks[1]['weights'], abs=1e-9, rel=1e-12)
    assert ranks[0]['bn_weights'] == pytest.approx(ranks[1]['bn_weights'], abs=1e-9, rel=1e-12)


def test_no_validation_set_and_sync_bn_on_the_cpu(ranks):
    for r in ranks:
        assert r['no_valid_ok']
        assert 'sync_bn=True needs CUDA' in r['sync_bn_error'] and 'distrib_ctx(sync_bn=False)' in r['sync_bn_error']
        assert r['bn_kept'] == ['BatchNorm2d']         # refused before fastai converted the layers


def test_a_killed_distributed_fit_continues_from_each_ranks_checkpoint(ranks):
    for r in ranks:
        assert r['ck_files'] == ['fit.pth', 'fit.rank1.pth']    # rank 0's file, and rank 1's beside it (its own DSA draws)
        assert r['resumed_equal']                               # killed after epoch 2, continued: the run never stopped
        assert r['without_rank_file_differs']                   # rank 1 on rank 0's generators instead: another run


def test_gift_eval_under_torchrun_matches_one_process(tmp_path):
    "The command launched on 2 processes: the global batch rule, rank 0 alone writes; accuracy as in one process."
    from gift_fastai.cli import gift_eval
    exe = Path(sys.executable).with_name('gift-eval')
    args = ['--loss', 'gift', '--epochs', '30', '--eval-every', '30', '--repeats', '3', '--checkpoint-every', '0']
    p = torchrun('--no-python', exe, *args, '--out', tmp_path / 'two')
    assert p.stdout.count('wrote ') == 1 and p.stdout.count('│ gift │') == 1, p.stdout   # one report, by rank 0
    assert json.loads((tmp_path / 'two' / 'results.json').read_text())['config']['processes'] == 2
    assert gift_eval([*args, '--out', str(tmp_path / 'one')]) == 0
    two, one = (json.loads((tmp_path / d / 'results.json').read_text()) for d in ('two', 'one'))
    a2, a1 = (np.array([r['final_acc'] for r in d['runs']]) for d in (two, one))
    assert len(a2) == len(a1) == 3
    # the same protocol (global batch 50: 25 per process): the means agree within the spread of the repeats
    noise = max(a1.std(), a2.std(), 0.01)
    print('final accuracy, 1 process:', a1, '2 processes:', a2)
    assert abs(a2.mean() - a1.mean()) < 3 * noise, (a1, a2)
    assert not np.array_equal(a1, a2)                  # two processes draw other augmentations: a different run


def test_gift_eval_under_accelerate_launch(tmp_path):
    "accelerate's launcher (its multi-process mode, which runs on gloo without GPUs) starts the command on 2 processes."
    exe = Path(sys.executable).with_name('accelerate')
    if not exe.exists(): pytest.skip(f"accelerate not found next to {sys.executable}")
    p = subprocess.run([str(exe), 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
                        '--dynamo_backend', 'no', str(Path(sys.executable).with_name('gift-eval')), '--loss', 'gift', '--epochs', '2',
                        '--repeats', '1', '--out', str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / 'results.json').read_text())
    assert res['config']['processes'] == 2 and len(res['runs']) == 1 and p.stdout.count('│ gift │') == 1
