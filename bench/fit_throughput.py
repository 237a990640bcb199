"""Throughput of `learn.fit` against the compute bound, on one machine in one run (run by hand, not a test).

  python bench/fit_throughput.py [--n 100] [--px 32] [--epochs 20] [--device cpu] [--out bench/results/fit_throughput.json]

Compute bound: the student's forward + backward + AdamW step plus the teacher's forward (no grad) on
ready, normalised tensors already on the device, no augmentation, no framework.
Our path: `distilled_learner(distilled_dls(...)).fit(E)` with DSA ('gift'), teacher relabelling and GIFT.
"""
import argparse, json, os, platform, time
from pathlib import Path
import torch, torch.nn as nn
from fastai.torch_core import set_seed
from gift_fastai.data import DistilledSet, distilled_dls, paper_bs
from gift_fastai.learner import distilled_learner
from gift_fastai.losses import get_loss
from gift_fastai.models import create_student


def compute_bound(student, teacher, x, y, bs, steps, loss):
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=1e-4)
    student.train(); teacher.eval()
    n, t0 = 0, None
    for i in range(steps + 2):
        if i == 2: t0, n = time.perf_counter(), 0  # two warm-up steps
        idx = torch.randint(0, len(x), (bs,))
        xb, yb = x[idx], y[idx]
        with torch.no_grad(): t = teacher(xb)
        l = loss(student(xb), yb, t)
        opt.zero_grad(); l.backward(); opt.step()
        n += bs
    if x.is_cuda: torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=100); p.add_argument('--px', type=int, default=32)
    p.add_argument('--classes', type=int, default=10); p.add_argument('--arch', default='convnet3')
    p.add_argument('--epochs', type=int, default=20); p.add_argument('--device', default='cpu')
    p.add_argument('--out', default='bench/results/fit_throughput.json')
    a = p.parse_args()
    set_seed(0)
    labels = torch.arange(a.classes).repeat_interleave(a.n // a.classes)
    imgs = (torch.rand(len(labels), 3, a.px, a.px) * 255).to(torch.uint8)
    dset = DistilledSet(imgs, labels, classes=[str(i) for i in range(a.classes)])
    teacher = create_student(a.arch, a.classes, 3, a.px).to(a.device).eval()
    bs = paper_bs(len(dset))
    # 1. compute bound on ready tensors
    mean, std = dset.stats
    x = ((imgs.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]).to(a.device)
    steps = a.epochs * (len(dset) // bs)
    bound = compute_bound(create_student(a.arch, a.classes, 3, a.px).to(a.device), teacher, x, labels.to(a.device), bs,
                          steps, get_loss('gift'))
    # 2. our path
    dls = distilled_dls(dset, bs=bs, aug='gift', device=a.device, seed=0)
    learn = distilled_learner(dls, a.arch, teacher=teacher, loss='gift')
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)  # warm-up
        t0 = time.perf_counter(); learn.fit(a.epochs)
        if a.device.startswith('cuda'): torch.cuda.synchronize()
        ours = a.epochs * len(dset) / (time.perf_counter() - t0)
    res = dict(arch=a.arch, n=a.n, px=a.px, bs=bs, epochs=a.epochs, device=a.device, threads=torch.get_num_threads(),
               cpu=platform.processor() or platform.machine(), torch=torch.__version__,
               compute_bound_img_s=round(bound, 1), ours_img_s=round(ours, 1), ratio=round(ours / bound, 3))
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
