"""Make the embedded default of `gift-eval` from the real Fashion-MNIST (run by hand; the same seed gives the same files).

  python tools/make_default.py [--epochs 3] [--seed 0] [--out gift_fastai/assets]

Needs Fashion-MNIST's IDX files (Debian package `dataset-fashion-mnist`, or --data PATH). Writes:
- fmnist_convnet3_teacher.safetensors: a ConvNet-3 (width 128, BatchNorm) trained on the 60k training images;
- fmnist_rded_ipc10.safetensors: RDED (f = 1, 300 candidates x 5 crops per class) with that teacher, 10 images per class;
- fmnist_test2k.safetensors: 200 images per class of the official TEST split (never seen by the teacher or by RDED).
"""
import argparse, json, time
from pathlib import Path
from fastai.torch_core import set_seed
from gift_fastai.datasets import get_dataset
from gift_fastai.teachers import train_teacher, save_teacher, check_teacher
from gift_fastai.distill import rded, random_subset
from gift_fastai.assets import ASSETS


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default=None, help="folder of the Fashion-MNIST IDX files (default: the Debian package's)")
    p.add_argument('--epochs', type=int, default=3); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='gift_fastai/assets')
    a = p.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    set_seed(a.seed)
    t0 = time.time()
    train, test = get_dataset('fashion-mnist', a.data)
    print(f"loaded {train} / {test} in {time.time() - t0:.1f} s")
    test2k = random_subset(test, 200, seed=a.seed)
    test2k.meta = dict(test.meta, split='test', subset='200 per class', seed=a.seed)
    t0 = time.time()
    teacher = train_teacher(train, 'convnet3', epochs=a.epochs, valid=test, seed=a.seed, progress=True)
    t_teacher = time.time() - t0
    rep = check_teacher(teacher, test2k)
    print(f"teacher: {teacher.teacher_meta.get('valid_acc')} on the 10k test split, {rep} (trained in {t_teacher:.0f} s)")
    t0 = time.time()
    dset = rded(train, teacher, ipc=10, factor=1, n_candidates=300, n_crops=5, seed=a.seed)
    t_rded = time.time() - t0
    dset.meta.update(source='fashion-mnist', teacher_valid_acc=teacher.teacher_meta.get('valid_acc'), rded_seconds=round(t_rded, 1))
    print(f"rded: {dset} in {t_rded:.1f} s")
    save_teacher(teacher, out / ASSETS['teacher']); dset.save(out / ASSETS['data']); test2k.save(out / ASSETS['test'])
    sizes = {f: (out / f).stat().st_size for f in ASSETS.values()}
    print(json.dumps(dict(sizes=sizes, total_mb=round(sum(sizes.values()) / 2 ** 20, 2), teacher_seconds=round(t_teacher),
                          rded_seconds=round(t_rded, 1)), indent=1))


if __name__ == '__main__': main()
