"""ImageNet-scale inputs end to end on generated fixtures in the real layouts: a distilled set in RDED's folders read from disk, the
validation images as WNID folders or the flat ILSVRC folder with its labels, a torchvision-format teacher restricted to a subset."""
import csv, json
from pathlib import Path
import numpy as np, pytest, torch, torchvision
from PIL import Image
from gift_fastai.cli import gift_eval, gift_distill, gift_ablate
from gift_fastai.data import DistilledSet
from gift_fastai.imagenet import imagenet_wnids, subset_wnids, subset_indices


def _img(p, rng, size):
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(p, quality=90)


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    """ImageNette as a user has it: RDED's 10 {c:05d} folders of 32-px images (IPC 3), ImageNet's validation images as WNID folders
    (two per ImageNette class, one for each other class here) and as the flat ILSVRC folder with a WNID list, ResNet-18's weights."""
    d, rng, w = tmp_path_factory.mktemp('imagenet'), np.random.default_rng(0), imagenet_wnids()
    for c in range(10):
        for k in range(3): _img(d / 'syn' / f'{c:05d}' / f'class{c:05d}_id{k:05d}.jpg', rng, (32, 32))
    nette = set(subset_indices('imagenette'))
    flat = []
    for i, wn in enumerate(w):
        for k in range(2 if i in nette else 1):
            _img(d / 'val' / wn / f'{wn}_{k}.JPEG', rng, (36 + 4 * k, 48))
            if i in nette: flat.append(wn)
    for n, wn in enumerate(flat): _img(d / 'flat' / f'ILSVRC2012_val_{n + 1:08d}.JPEG', rng, (40, 44))
    (d / 'wnids.txt').write_text(''.join(f"{wn}\n" for wn in flat))
    torch.manual_seed(0); torch.save(torchvision.models.resnet18(weights=None).state_dict(), d / 'resnet18.pth')
    return d


def _args(d, out, *extra):
    return ['--data', str(d / 'syn'), '--teacher', str(d / 'resnet18.pth'), '--teacher-arch', 'resnet18', '--subset', 'imagenette',
            '--arch', 'resnet18', '--protocol', 'rded', '--loss', 'kl', '--epochs', '6', '--eval-every', '1', '--bs', '10', '--repeats', '1', '--no-teacher-check',
            '--workers', '0', '--out', str(out), *extra]


def test_gift_eval_runs_rded_on_the_disk_path(imagenet, tmp_path, capsys):
    "gift-eval --protocol rded with the set read from disk, ImageNet's WNID validation folders cut to ImageNette, a torchvision teacher."
    assert gift_eval(_args(imagenet, tmp_path / 'a', '--test', str(imagenet / 'val'), '--data-path', 'disk')) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert '30 images (10 classes, on disk), test 20, on disk' in out, out
    rows = list(csv.DictReader(open(tmp_path / 'a' / 'results.csv')))
    assert len(rows) == 1 and rows[0]['protocol'] == 'rded' and rows[0]['n_test'] == '20' and 0 <= float(rows[0]['final_acc']) <= 1
    s = json.loads(rows[0]['settings'])
    assert s['item_aug'] is True and s['protocol']['aug'] == 'rded-train'
    cfg = json.loads((tmp_path / 'a' / 'results.json').read_text())['config']
    assert cfg['classes'] == subset_wnids('imagenette')   # RDED's numbered folders named by the subset's classes, in its order


def test_the_disk_path_gives_the_memory_path_result(imagenet, tmp_path, capsys):
    """The same run from memory and from disk (its crops and flips on the device, as in memory): the same accuracy; decoded on the
    device (torchvision's decoder; here the CPU's); the flat ILSVRC folder and its labels run too."""
    acc = {}
    for name, extra in (('memory', ['--data-path', 'memory', '--test', str(imagenet / 'val')]),
                        ('disk', ['--data-path', 'disk', '--device-aug', '--test', str(imagenet / 'val')]),
                        ('device', ['--data-path', 'disk', '--decode', 'device', '--test', str(imagenet / 'val')]),
                        ('flat', ['--data-path', 'disk', '--device-aug', '--test', str(imagenet / 'flat'), '--test-labels', str(imagenet / 'wnids.txt')])):
        assert gift_eval(_args(imagenet, tmp_path / name, *extra)) == 0, capsys.readouterr().err
        acc[name] = [float(r['final_acc']) for r in csv.DictReader(open(tmp_path / name / 'results.csv'))]
    assert acc['memory'] == acc['disk'], acc
    # decoded on the device, the training batches are the memory path's; the test photos are resized by torch's antialiased bilinear,
    # not PIL's (mean |difference| 0.17 levels, files notebook), which may move a prediction near a boundary: 1-2 of these 20
    assert abs(acc['device'][0] - acc['memory'][0]) <= 0.1, acc
    s = json.loads(next(csv.DictReader(open(tmp_path / 'device' / 'results.csv')))['settings'])
    assert s['item_aug'] is False
    assert len(acc['flat']) == 1


def test_imagenet_inputs_are_checked(imagenet, tmp_path, capsys):
    "A wrong architecture for the weights, an unknown subset, a flat folder without its labels: refused before training, by name."
    base = _args(imagenet, tmp_path / 'x', '--test', str(imagenet / 'val'))
    assert gift_eval([a if a != 'resnet18' or i != base.index('--teacher-arch') + 1 else 'mobilenet_v2' for i, a in enumerate(base)]) == 2
    assert "are not mobilenet_v2's" in capsys.readouterr().err
    assert gift_eval([a if a != 'imagenette' else 'imagenet-100' for a in base]) == 2
    assert "unknown subset 'imagenet-100'" in capsys.readouterr().err
    flat = _args(imagenet, tmp_path / 'y', '--test', str(imagenet / 'flat'))
    flat.remove('--subset'); flat.remove('imagenette')
    assert gift_eval(flat) == 2
    assert 'labels file' in capsys.readouterr().err


@pytest.fixture(scope='module')
def shufflenet(imagenet):
    "ShuffleNet-V2 x0.5's weights (random), the smallest of G-VBSM's ImageNet-1K teachers."
    torch.manual_seed(1); torch.save(torchvision.models.shufflenet_v2_x0_5(weights=None).state_dict(), imagenet / 'shufflenet.pth')
    return imagenet / 'shufflenet.pth'


def test_gvbsm_with_an_ensemble_of_torchvision_teachers_on_the_disk_path(imagenet, shufflenet, tmp_path, capsys):
    "gift-eval --protocol gvbsm: two torchvision teachers (its ensemble, logits rescaled), the set and the test images on disk."
    args = _args(imagenet, tmp_path / 'g', '--test', str(imagenet / 'val'), '--data-path', 'disk')
    args[args.index('--protocol') + 1], args[args.index('--loss') + 1] = 'gvbsm', 'own'
    args[args.index('--teacher') + 1] = f"{imagenet / 'resnet18.pth'},{shufflenet}"
    args[args.index('--teacher-arch') + 1] = 'resnet18,shufflenet_v2_x0_5'
    args[args.index('--epochs') + 1] = '2'
    assert gift_eval(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'g' / 'results.csv')))
    assert len(rows) == 1 and rows[0]['protocol'] == 'gvbsm' and rows[0]['loss'] == 'mse_ce', rows
    s = json.loads(rows[0]['settings'])
    assert s['protocol']['ensemble'] == 'rescaled' and s['item_aug'] is True
    args[args.index('--teacher-arch') + 1] = 'resnet18,shufflenet_v2_x0_5,resnet18'
    args[args.index('--out') + 1] = str(tmp_path / 'h')
    assert gift_eval(args) == 2 and '2 teachers but 3 architectures' in capsys.readouterr().err


def test_gift_distill_from_imagenet_train_folders(imagenet, tmp_path, capsys):
    """gift-distill on ImageNet's class folders (photos of several sizes) read from disk: RDED with a torchvision teacher restricted
    to a subset given as a file of WNIDs (as ImageNet-100's list is), and the random baseline, both at --size."""
    (tmp_path / 'sub.txt').write_text(''.join(f"{w}\n" for w in subset_wnids('imagenette')[3::-1]))
    base = ['--data', str(imagenet / 'val'), '--subset', str(tmp_path / 'sub.txt'), '--size', '32', '--ipc', '1', '--data-path', 'disk']
    rd = base + ['--teacher', str(imagenet / 'resnet18.pth'), '--teacher-arch', 'resnet18', '--factor', '2', '--crops', '2',
                 '--out', str(tmp_path / 'rded.safetensors')]
    assert gift_distill(rd) == 0, capsys.readouterr().err
    s = DistilledSet.load(tmp_path / 'rded.safetensors')
    assert s.shape == (3, 32, 32) and s.classes == subset_wnids('imagenette')[3::-1] and s.class_counts.tolist() == [1] * 4
    assert s.meta['method'] == 'rded' and s.meta['factor'] == 2
    assert gift_distill(base + ['--method', 'random', '--out', str(tmp_path / 'rand.safetensors')]) == 0, capsys.readouterr().err
    r = DistilledSet.load(tmp_path / 'rand.safetensors')
    assert r.shape == (3, 32, 32) and r.class_counts.tolist() == [1] * 4
    nosize = [a for a in rd if a not in ('--size', '32')]
    nosize[nosize.index('--out') + 1] = str(tmp_path / 'x.safetensors')
    assert gift_distill(nosize) == 2 and 'give the side of the images to make (--size 224)' in capsys.readouterr().err


def test_gift_ablate_on_imagenet_inputs(imagenet, tmp_path, capsys):
    "gift-ablate with ImageNet's validation folders, a torchvision teacher and a subset: a 2-loss grid on the disk path."
    args = ['--data', str(imagenet / 'syn'), '--teacher', str(imagenet / 'resnet18.pth'), '--teacher-arch', 'resnet18', '--subset',
            'imagenette', '--test', str(imagenet / 'val'), '--arch', 'resnet18', '--protocol', 'rded', '--loss', 'kl,gift', '--epochs', '6', '--eval-every', '1',
            '--repeats', '1', '--bs', '10', '--no-teacher-check', '--data-path', 'disk', '--workers', '0', '--out', str(tmp_path / 'ab')]
    assert gift_ablate(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'ab' / 'results.csv')))
    assert sorted(r['loss'] for r in rows) == ['gift', 'kl'] and all(r['n_test'] == '20' for r in rows), rows
    assert all(json.loads(r['settings'])['item_aug'] is True for r in rows)
    dev = [a if a != str(tmp_path / 'ab') else str(tmp_path / 'dev') for a in args] + ['--decode', 'device', '--loss', 'kl']
    assert gift_ablate(dev) == 0, capsys.readouterr().err   # decoded on the device: the crops and flips run there (item_aug off)
    assert [json.loads(r['settings'])['item_aug'] for r in csv.DictReader(open(tmp_path / 'dev' / 'results.csv'))] == [False]
