"TeacherRelabel in fastai's distributed context: two CPU processes (torchrun, gloo), each relabelling its own shard."
import json, os, subprocess, sys
from pathlib import Path
import pytest

HERE = Path(__file__).parent


def test_teacher_relabel_under_fastai_distributed(tmp_path):
    torchrun = Path(sys.executable).with_name('torchrun')
    if not torchrun.exists(): pytest.skip(f"torchrun not found next to {sys.executable}")
    env = dict(os.environ, OMP_NUM_THREADS='1', NO_ALBUMENTATIONS_UPDATE='1')
    p = subprocess.run([str(torchrun), '--standalone', '--nproc_per_node', '2', str(HERE / '_dist_relabel.py'), str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r['world'] == 2 and r['wrapped'] == 'DistributedDataParallel', r
        assert r['batches'] == 4                      # 40 images, bs 10, 2 ranks: 2 batches per rank per epoch, 2 epochs
        assert r['max_soft_err'] < 1e-5               # the soft slot holds the teacher's logits on this rank's batch
        assert r['labels_ok'] and r['teacher_unchanged'] and r['teacher_device'] == 'cpu'
    assert set(r0['ids_epoch1']).isdisjoint(r1['ids_epoch1'])            # each rank relabels its own shard ...
    assert sorted(r0['ids_epoch1'] + r1['ids_epoch1']) == list(range(40))  # ... and together they cover the set
    assert abs(r0['student_sum'] - r1['student_sum']) < 1e-6              # DDP kept the students in sync
