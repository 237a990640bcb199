"""Reproduce the paper's studies on Fashion-MNIST with gift-fastai (the runs behind nbs/13_reproduction.ipynb).

    python tools/reproduce_fmnist.py                 # into runs/fmnist: trains only what its results store lacks
    python tools/reproduce_fmnist.py --epochs 1000 --out runs/fmnist-gpu --device cuda   # the paper's epochs

nbs/repro/fmnist/results.csv holds the committed runs; an earlier version wrote it (before the results store), so it
is read (gift_fastai.engine.read_results) but not resumed: a rerun goes to a new --out.

Sets (made here, cached in --cache, not committed): RDED IPC 1, 10 and 50 and a random subset at IPC 10, all from the
real Fashion-MNIST training split and the embedded ConvNet-3 teacher (the RDED IPC 10 recipe of the embedded set:
300 candidates x 5 crops per class). Test: the embedded 2,000 held-out test images. Runs go one repeat of every
study at a time (repeat 0 of all studies, then repeat 1, ...), so a run cut short still covers every study.
"""
import argparse, json, sys, time
from pathlib import Path
from gift_fastai.assets import asset_path
from gift_fastai.cli import RichReport
from gift_fastai.experiments import expand_grid, run_grid, PRESETS

def studies(sets:dict, epochs:int, arch_epochs:int, long_epochs:int=300) -> list:
    "(name, grid, epochs, repeats) of every study; the grids name the sets as label=path."
    r10 = [f"rded10={sets['rded10']}"]
    return [
        ('table5', dict(data=r10, opt=['sgd', 'adam', 'adamw'], loss=['kl', 'gift']), epochs, 3),
        ('table5-sgd-lr', dict(data=r10, opt=['sgd'], lr=[0.03, 0.01], loss=['kl', 'gift']), epochs, 3),
        ('table7', dict(PRESETS['paper-table7']['grids'][0], data=r10), epochs, 3),
        ('table6', dict(PRESETS['paper-table6']['grids'][0], data=r10), epochs, 3),
        ('fig3', dict(PRESETS['paper-fig3']['grids'][0], data=r10), epochs, 3),
        ('ipc', dict(data=[f"{k}={v}" for k, v in sets.items()], loss=['kl', 'gift']), epochs, 3),
        ('arch', dict(data=r10, arch=['resnet18_modified'], loss=['kl', 'gift']), arch_epochs, 3),
        ('table3', dict(PRESETS['paper-table3']['grids'][0], data=r10), epochs, 3),
        # do the rankings hold with longer training? one seed, 6x the epochs
        ('long', dict(data=r10, loss=['kl', 'gift', 'ce', 'softce_ce', 'wsld']), long_epochs, 1),
    ]

def make_sets(cache:Path, seed:int=0) -> dict:
    "The four training sets, made once and cached."
    from gift_fastai.datasets import get_dataset
    from gift_fastai.distill import rded, random_subset
    from gift_fastai.teachers import load_teacher
    cache.mkdir(parents=True, exist_ok=True)
    want = dict(rded1=('rded', 1), rded10=('rded', 10), rded50=('rded', 50), random10=('random', 10))
    paths = {k: cache / f"fmnist_{k}.safetensors" for k in want}
    if all(p.exists() for p in paths.values()): return {k: str(p) for k, p in paths.items()}
    train = get_dataset('fashion-mnist')[0]
    teacher = load_teacher(asset_path('teacher'), classes=train.classes, shape=train.shape)
    log = {}
    for k, (method, ipc) in want.items():
        if paths[k].exists(): continue
        t0 = time.time()
        d = random_subset(train, ipc, seed=seed) if method == 'random' else rded(train, teacher, ipc, factor=1, n_candidates=300, n_crops=5, seed=seed)
        d.meta.update(source='fashion-mnist'); d.save(paths[k]); log[k] = round(time.time() - t0, 1)
        print(f"{k}: {d} in {log[k]} s", flush=True)
    return {k: str(p) for k, p in paths.items()}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='runs/fmnist'); p.add_argument('--cache', default='.repro-cache')
    p.add_argument('--epochs', type=int, default=50); p.add_argument('--arch-epochs', type=int, default=30)
    p.add_argument('--long-epochs', type=int, default=300)
    p.add_argument('--repeats', type=int, default=3); p.add_argument('--device', default=None)
    p.add_argument('--only', default=None, help="comma list of study names to run")
    a = p.parse_args(argv)
    from rich.console import Console
    console = Console()
    sets = make_sets(Path(a.cache))
    todo = [s for s in studies(sets, a.epochs, a.arch_epochs, a.long_epochs) if a.only is None or s[0] in a.only.split(',')]
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    wall = json.loads((out / 'wall.json').read_text()) if (out / 'wall.json').exists() else {}
    for r in range(1, a.repeats + 1):   # repeat 0 of everything first, then 1, then 2
        for name, grid, epochs, reps in todo:
            if r > reps: continue
            t0 = time.time()
            console.rule(f"{name}: repeats < {r}")
            with RichReport(console, f"runs of {name}") as report:
                run_grid(expand_grid(grid), out, epochs=epochs, repeats=r, device=a.device, report=report)
            wall[name] = round(wall.get(name, 0) + time.time() - t0, 1)
            (out / 'wall.json').write_text(json.dumps(wall, indent=1) + '\n')
    return 0

if __name__ == '__main__': sys.exit(main())
