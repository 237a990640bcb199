"""The weak-teacher study (issue: honest evaluation): GIFT's refinement is claimed to matter most when the teacher is weak.

Run by hand (not a test), from the repository root, where Fashion-MNIST is installed (the Debian package
`dataset-fashion-mnist`, or --fmnist PATH): `python bench/weak_teacher.py`. It trains two weaker ConvNet-3 teachers on
small class-balanced samples of Fashion-MNIST's training split (seeded), keeps the embedded teacher as the strong one,
and runs, for each teacher, GIFT's ablation grid on the embedded RDED set (IPC 10): loss gift/kl × refine on/off, 3 seeds,
the GIFT protocol at --epochs, tested on the embedded 2,000 test images, selected on 500 held-out real training images
(never a test image). Each teacher's grid is a results store under nbs/repro/weak_teacher/<name>/ (resumable); the
teachers' accuracies go to nbs/repro/weak_teacher/teachers.json. The page `nbs/28_weak_teacher.ipynb` reads them.
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'nbs' / 'repro' / 'weak_teacher'
WEAK = {'weak': 5, 'medium': 30}  # images per class the weaker teachers see (seeded sample of the training split)


def main(argv=None):
    from gift_fastai.datasets import get_dataset, DEBIAN_FASHION_MNIST
    from gift_fastai.distill import random_subset
    from gift_fastai.teachers import train_teacher, save_teacher, check_teacher, load_teacher
    from gift_fastai.assets import asset_path, load_default
    from gift_fastai.cli import gift_ablate
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--fmnist', default=str(DEBIAN_FASHION_MNIST))
    p.add_argument('--epochs', type=int, default=50)
    p.add_argument('--repeats', type=int, default=3)
    a = p.parse_args(argv)
    train, _ = get_dataset('fashion-mnist', path=a.fmnist)
    dset, strong, test = load_default()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    teachers = {'strong': (asset_path('teacher'), check_teacher(strong, test, warn=False).accuracy, 'the embedded teacher')}
    for name, n in WEAK.items():
        t0 = time.time()
        t = train_teacher(random_subset(train, n, seed=0), 'convnet3', epochs=30, bs=min(128, 10 * n), seed=0, device='cpu')
        f = save_teacher(t, tmp / f'{name}.safetensors')
        teachers[name] = (f, check_teacher(load_teacher(f), test, warn=False).accuracy, f"ConvNet-3 on {n} images per class, 30 epochs")
        print(f"{name}: {100 * teachers[name][1]:.2f}% on the test images ({time.time() - t0:.0f} s)", flush=True)
    (OUT / 'teachers.json').write_text(json.dumps({k: dict(test_acc=v[1], recipe=v[2]) for k, v in teachers.items()}, indent=1))
    for name, (f, acc, _) in teachers.items():
        print(f"== {name} teacher ({100 * acc:.2f}%)", flush=True)
        rc = gift_ablate(['--teacher', str(f), '--loss', 'gift,kl', '--refine', 'on,off', '--epochs', str(a.epochs), '--repeats', str(a.repeats),
                          '--heldout', f'fashion-mnist:{a.fmnist}', '--heldout-per-class', '50', '--out', str(OUT / name)])
        if rc: sys.exit(rc)
        _name_teacher(OUT / name / 'results.csv', f"{name} teacher ({teachers[name][2]})")


def _name_teacher(path:Path, label:str):
    "Name the teacher in the rows (the grid records the file's path: a temporary one, or this machine's)."
    import csv
    with open(path, newline='') as f: r = csv.DictReader(f); rows, cols = list(r), r.fieldnames
    for row in rows: row['teacher'] = label
    with open(path, 'w', newline='') as f: w = csv.DictWriter(f, cols, lineterminator='\n'); w.writeheader(); w.writerows(rows)


if __name__ == '__main__': main()
