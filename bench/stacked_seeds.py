"""Stacked seeds (`stack_seeds`, `gift_fastai.stacked.fit_seeds`) against the same runs one after another (`fit_run`), run by hand.

  python bench/stacked_seeds.py [--device cpu|cuda] [--seeds 3] [--epochs 3] [--rounds 2] [--out bench/results]

The runs: R seeds of one cell, ConvNet-3 (batch norm, and instance norm), a CIFAR-100-shaped set of IPC 10 (1000 random
32 px images: the speed does not depend on what the pixels show), a random teacher of its shape, the GIFT protocol with its
DSA augmentation, `--epochs` epochs, tested after the last. The two ways take turns in each round (a slow spell of the
machine hits both), and the median wall time of each is reported with their ratio (stacked over one by one: > 1 is faster),
with the largest difference of the runs' test accuracies. Writes `<out>/stacked-seeds-<device>.json`."""
import argparse, json, platform, statistics, time
from pathlib import Path
import torch
from gift_fastai.data import DistilledSet
from gift_fastai.engine import Run, fit_run
from gift_fastai.models import create_student
from gift_fastai.protocols import get_protocol
from gift_fastai.stacked import fit_seeds
from gift_fastai.teachers import as_teacher


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu')
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results'))
    a = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    C, ipc = 100, 10
    dset = DistilledSet(torch.randint(0, 256, (C * ipc, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(C).repeat_interleave(ipc),
                        classes=[str(c) for c in range(C)])
    test = DistilledSet(torch.randint(0, 256, (C * 2, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(C).repeat_interleave(2),
                        classes=dset.classes)
    out = dict(device=a.device, threads=torch.get_num_threads(), torch=torch.__version__, cpu=platform.processor() or platform.machine(),
               gpu=torch.cuda.get_device_name() if torch.device(a.device).type == 'cuda' else None, seeds=a.seeds, epochs=a.epochs,
               images=len(dset), cases={})
    for norm in ('batch', 'instance'):
        torch.manual_seed(0)
        teacher = as_teacher(create_student('convnet3', C, 3, 32, norm=norm), dset.classes, *dset.stats)
        kw = dict(arch_kwargs=dict(norm=norm))
        runs = {s: [Run(dset, test, teacher, 'convnet3', 'gift', get_protocol('gift', epochs=a.epochs, eval_every=0, stack_seeds=s), seed=i, **kw)
                    for i in range(a.seeds)] for s in (False, True)}
        fit_seeds(runs[True][:1], a.device)  # (warm-up: allocator, kernels)
        times, accs = {'one by one': [], 'stacked': []}, {}
        for _ in range(a.rounds):
            t0 = time.perf_counter(); accs['one by one'] = [fit_run(r, a.device)['final_acc'] for r in runs[False]]
            times['one by one'].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); accs['stacked'] = [r['final_acc'] for r in fit_seeds(runs[True], a.device)]
            times['stacked'].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        img = a.seeds * a.epochs * len(dset)
        out['cases'][f'{norm} norm'] = dict(seconds={k: round(v, 2) for k, v in med.items()}, img_s={k: round(img / v, 1) for k, v in med.items()},
                                            stacked_over_one_by_one=round(med['one by one'] / med['stacked'], 3),
                                            max_acc_difference=round(max(abs(x - y) for x, y in zip(accs['one by one'], accs['stacked'])), 4))
        print(norm, json.dumps(out['cases'][f'{norm} norm']))
    f = Path(a.out) / f"stacked-seeds-{torch.device(a.device).type}.json"
    f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(out, indent=1) + '\n')
    print(f"wrote {f}")


if __name__ == '__main__': main()
