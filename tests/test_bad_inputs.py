"""The bad-input catalogue: every public entry point fed what users get wrong. Each case must give a clear
error that names the problem (an `InputError`, or for a command one line on stderr and exit code 2) or a loud warning,
and leave no half-written file."""
import errno
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from gift_fastai.core import InputError
from gift_fastai.data import DistilledSet, from_rded_folder, from_class_folders, from_gift_pt, distilled_dls, export_folders
from gift_fastai.learner import distilled_learner
from gift_fastai.losses import get_loss
from gift_fastai.models import create_student
from gift_fastai.augment import DSA
from gift_fastai.distill import rded, random_subset
from gift_fastai.teachers import load_teacher, save_teacher, as_teacher
from gift_fastai.cli import gift_eval, gift_distill, gift_ablate, gift_continual
from gift_fastai.checkpoint import Checkpoint, load_checkpoint
from gift_fastai.distributed import per_process_bs
from gift_fastai.engine import evaluate_distilled, run_all, Run, ResultsStore
from gift_fastai.protocols import get_protocol
from conftest import C, H, blobs, trained_teacher


def rded_dir(root, classes=('00000', '00001'), n=2, size=8):
    "An RDED folder with `n` PNGs per class folder."
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n): Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(root / c / f'{i}.png')
    return root


def corrupt(root):
    d = rded_dir(root); (d / '00001' / 'bad.png').write_bytes(b'not a png'); return d

def truncated(root):
    d = rded_dir(root); f = d / '00000' / '0.png'; f.write_bytes(f.read_bytes()[:40]); return d

def empty_class(root):
    d = rded_dir(root); (d / '00002').mkdir(); return d

def gap(root): return rded_dir(root, classes=('00000', '00002'))
def names(root): return rded_dir(root, classes=('cat', 'dog'))

def pt(root, data, label):
    f = root / 'data.pt'; torch.save(dict(data=data, label=label), f); return f


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    train = blobs(4)
    torch.manual_seed(0)
    teacher = trained_teacher()  # labels the toy sets right: the commands' teacher check passes, and the case in question fails
    six = as_teacher(create_student('convnet3', 6, in_ch=1, img_size=H, width=8), list('abcdef'), *train.stats)
    return dict(dir=d, train=train, teacher=teacher, tfile=save_teacher(teacher, d / 't.safetensors'),
                six=save_teacher(six, d / 'six.safetensors'), data=train.save(d / 'set.safetensors'))


def half(path, obj):
    "A checkpoint cut in the middle (a kill or a full disk outside our atomic writes)."
    torch.save(obj, path); b = path.read_bytes(); path.write_bytes(b[:len(b) // 2]); return path

def earlier(root, columns='loss,repeat,seed,final_acc,best_acc,seconds'):
    "An --out folder holding the results.csv of an earlier version (another schema, no run keys)."
    (root / 'o').mkdir(); (root / 'o' / 'results.csv').write_text(columns + '\n')
    return root / 'o'

def eval_args(w, t, out):
    return ['--data', str(w['data']), '--teacher', str(w['tfile']), '--test', str(w['data']), '--epochs', '1', '--out', str(out)]

def parts(root):
    (root / 'x.safetensors.parts').mkdir(); (root / 'x.safetensors.parts' / 'class00000.pt').write_bytes(b'x'); return root


# (name, what it does with the `world` and a fresh tmp folder, the text the error must contain)
CASES = [
    ('missing image folder', lambda w, t: from_rded_folder(t / 'nope'), 'no such folder'),
    ('corrupt image file', lambda w, t: from_rded_folder(corrupt(t)), 'corrupt'),
    ('truncated image file', lambda w, t: from_rded_folder(truncated(t)), 'truncated'),
    ('folder with an empty class', lambda w, t: from_rded_folder(empty_class(t)), 'has no image'),
    ('non-contiguous class folders', lambda w, t: from_rded_folder(gap(t)), 'not contiguous'),
    ('non-numeric class folders', lambda w, t: from_rded_folder(names(t)), 'not a class number'),
    ('class-name folders without their order', lambda w, t: from_class_folders(names(t), None), 'class list'),
    ('class-name folder not in the list', lambda w, t: from_class_folders(names(t), ['cat']), 'not in the class list'),
    ('data.pt missing', lambda w, t: from_gift_pt(t / 'data.pt'), 'no such file'),
    ('data.pt not a dict', lambda w, t: from_gift_pt((torch.save(torch.zeros(2), t / 'x.pt'), t / 'x.pt')[1]), "keys 'data' and 'label'"),
    ('data.pt images of the wrong rank', lambda w, t: from_gift_pt(pt(t, torch.rand(4, 8, 8), torch.zeros(4).long())), 'dimension'),
    ('data.pt images normalised already', lambda w, t: from_gift_pt(pt(t, torch.randn(4, 3, 8, 8) * 3, torch.zeros(4).long())), 'normalised'),
    ('images as floats', lambda w, t: DistilledSet(torch.rand(4, 3, 8, 8), torch.zeros(4).long()), 'uint8'),
    ('images [N,H,W,C]', lambda w, t: DistilledSet(torch.zeros(4, 8, 8, 3, dtype=torch.uint8), torch.zeros(4).long()), 'permute'),
    ('labels of the wrong length', lambda w, t: DistilledSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(3).long()), 'labels must be [N]'),
    ('soft labels of the wrong width', lambda w, t: DistilledSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4),
                                                               soft=torch.zeros(4, 5), classes=list('abcd')), 'one column per class'),
    ('soft labels with NaN', lambda w, t: DistilledSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4),
                                                     soft=torch.full((4, 4), float('nan'))), 'NaN'),
    ('set file that is not one', lambda w, t: DistilledSet.load((Path(t / 'j.safetensors').write_bytes(b'junk'), t / 'j.safetensors')[1]), 'not a set file'),
    ('teacher file missing', lambda w, t: load_teacher(t / 'none.safetensors'), 'no such teacher'),
    ('teacher with another class count', lambda w, t: load_teacher(w['six'], classes=w['train'].classes), 'class'),
    ('teacher with another class order', lambda w, t: load_teacher(w['tfile'], classes=['e', 'n', 's', 'w']), 'order'),
    ('student that cannot take the image size', lambda w, t: create_student('convnet6', C, 1, H), 'ConvNet-6'),
    ('unknown student', lambda w, t: create_student('resnet9000', C, 1, H), 'unknown student'),
    ('unknown loss', lambda w, t: get_loss('gfit'), "Did you mean 'gift'"),
    ('unknown augmentation', lambda w, t: DSA('flipp'), 'flip'),
    ('unknown optimizer', lambda w, t: distilled_learner(distilled_dls(w['train']), 'convnet3', opt='lamb'), 'optimizer'),
    ('learner with a teacher of another class count', lambda w, t: distilled_learner(
        distilled_dls(w['train']), 'convnet3', teacher=create_student('convnet3', 6, 1, H, width=8)), 'class counts disagree'),
    ('precision the device cannot run', lambda w, t: distilled_learner(distilled_dls(w['train'], device='cpu'), 'convnet3',
                                                                       precision='fp16'), "use 'bf16' on the CPU"),
    ('rded with more images per class than there are', lambda w, t: rded(w['train'], w['teacher'], ipc=50, n_crops=1), 'ipc'),
    ('random subset larger than a class', lambda w, t: random_subset(w['train'], 99), 'ipc'),
    ('export into a non-empty folder', lambda w, t: export_folders(w['train'], rded_dir(t)), 'not empty'),
    ('checkpoint file missing', lambda w, t: load_checkpoint(t / 'none.pth'), 'does not exist'),
    ('checkpoint file truncated', lambda w, t: load_checkpoint(half(t / 'c.pth', {'epoch': 1, 'model': torch.zeros(1000)})), 'delete it'),
    ('checkpoint that is not a fit checkpoint', lambda w, t: load_checkpoint((torch.save({'x': 1}, t / 'x.pth'), t / 'x.pth')[1]),
     'not a fit checkpoint'),
    ('checkpoint interval of 0 epochs', lambda w, t: Checkpoint(t / 'c.pth', every=0), 'every must be'),
    ('global batch that does not split among the processes', lambda w, t: per_process_bs(50, 4), 'multiple of 4'),
    ('SyncBatchNorm without CUDA', lambda w, t: evaluate_distilled(w['train'], w['train'], epochs=1, seeds=1, device='cpu',
                                                                   sync_bn=True), 'needs CUDA'),
    ('unknown protocol', lambda w, t: get_protocol('rded2'), 'unknown protocol'),
    ('protocol setting misspelt', lambda w, t: evaluate_distilled(w['train'], w['train'], epoch=1), "no setting 'epoch'"),
    ('protocol setting out of range', lambda w, t: get_protocol('gift', milestones=(0.5, 1.5)), 'milestones must be fractions'),
    ('learner given a setting of the fit', lambda w, t: distilled_learner(distilled_dls(w['train']), 'convnet3', epochs=3),
     'setting of the fit or the loaders'),
    ('loader with worker processes', lambda w, t: distilled_dls(w['train'], num_workers=4), 'Leave num_workers at 0'),
    ('the same seed twice', lambda w, t: evaluate_distilled(w['train'], w['train'], seeds=[0, 0]), 'seeds must be distinct'),
    ('the same run twice', lambda w, t: run_all([Run(w['train'], w['train'])] * 2), 'are the same run'),
    ('results store of an earlier version', lambda w, t: ResultsStore(earlier(t)).rows(), 'start anew'),
    ('rded resumed with other settings', lambda w, t: [rded(w['train'], w['teacher'], ipc=1, n_crops=1, seed=s, checkpoint=t)
                                                       for s in (0, 1)], 'seed=0'),
]

CLI_CASES = [
    ('gift-eval: missing --data file', lambda w, t: gift_eval(['--data', str(t / 'x.safetensors'), '--out', str(t / 'o')]), 'no such file'),
    ('gift-eval: teacher with another class count', lambda w, t: gift_eval(['--data', str(w['data']), '--teacher', str(w['six']),
                                                                            '--test', str(w['data']), '--out', str(t / 'o')]), 'class'),
    ('gift-eval: output folder under a file', lambda w, t: gift_eval(['--data', str(w['data']), '--teacher', str(w['tfile']),
        '--test', str(w['data']), '--epochs', '1', '--repeats', '1', '--out', str(((t / 'f').write_text('x'), t / 'f' / 'out')[1])]),
     'not a directory'),
    ('gift-distill: output folder missing', lambda w, t: gift_distill(['--data', str(w['data']), '--method', 'random', '--ipc', '1',
                                                                      '--out', str(t / 'no' / 'x.safetensors')]), 'does not exist'),
    ('gift-eval: --out holding the results of an earlier version', lambda w, t: gift_eval(eval_args(w, t, earlier(t))), 'start anew'),
    ('gift-ablate: --out holding the results of an earlier version', lambda w, t: gift_ablate(
        ['--out', str(earlier(t, 'data,ipc,arch,loss,refine,gamma,opt,lr,wd,epochs,repeat,seed')), '--epochs', '1']), 'start anew'),
    ('gift-continual: --budget without --memory gdumb', lambda w, t: gift_continual(['--budget', '5', '--out', str(t / 'o')]),
     '--memory gdumb only'),
    ('gift-eval: unknown protocol', lambda w, t: gift_eval(eval_args(w, t, t / 'o') + ['--protocol', 'rdde']), 'unknown protocol'),
    ('gift-eval: protocol statistics for 3 channels on grey images', lambda w, t: gift_eval(eval_args(w, t, t / 'o') + ['--protocol', 'rded', '--epochs', '20']), "--norm teacher"),
    ('gift-eval: --sync-bn without CUDA', lambda w, t: gift_eval(eval_args(w, t, t / 'o') + ['--sync-bn', '--device', 'cpu']),
     'needs CUDA'),
    ('gift-distill: the parts of a killed run, without --resume', lambda w, t: gift_distill([
        '--data', str(w['data']), '--teacher', str(w['tfile']), '--out', str(parts(t) / 'x.safetensors')]), 'add --resume'),
    ('gift-distill: rded without a teacher', lambda w, t: gift_distill(['--data', str(w['data']), '--out', str(t / 'x.safetensors')]),
     'needs --teacher'),
]


@pytest.mark.parametrize('name,call,msg', CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(world, tmp_path, name, call, msg):
    with pytest.raises(InputError) as e: call(world, tmp_path)
    assert msg.lower() in str(e.value).lower(), f"{name}: {e.value}"


@pytest.mark.parametrize('name,call,msg', CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_gives_one_line_and_exit_2(world, tmp_path, capsys, name, call, msg):
    assert call(world, tmp_path) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and msg.lower() in err.lower(), err


def test_uint8_data_pt_warns_loudly(tmp_path):
    with pytest.warns(UserWarning, match='uint8'):
        s = from_gift_pt(pt(tmp_path, torch.full((4, 3, 8, 8), 200, dtype=torch.uint8), torch.arange(4) % 2))
    assert int(s.images.max()) == 200   # read as 0-255, not scaled again


def test_a_full_disk_leaves_no_half_written_file(world, tmp_path, monkeypatch):
    "A write that fails midway (ENOSPC) raises, and neither the target nor a temporary file is left behind."
    import safetensors.torch as st
    def full(tensors, path, metadata=None):
        Path(path).write_bytes(b'\0' * 100)   # part of the file was written...
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(st, 'save_file', full)
    with pytest.raises(OSError, match='No space left'): world['train'].save(tmp_path / 'set.safetensors')
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    keep = world['train'].save(tmp_path / 'keep.safetensors'); before = keep.read_bytes()
    monkeypatch.setattr(st, 'save_file', full)
    with pytest.raises(OSError): world['train'].save(keep)
    assert keep.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['keep.safetensors']


def test_catalogue_names_each_case_once_and_covers_every_command():
    "Each case is named once (a copied case would hide a missing one), and every command has its own cases."
    names = [c[0] for c in CASES + CLI_CASES]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert {n.split(':')[0] for n in (c[0] for c in CLI_CASES)} == {'gift-eval', 'gift-distill', 'gift-ablate', 'gift-continual'}
