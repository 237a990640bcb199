"""Throughput of the DSA batch augmentation per strategy and per op (run by hand, not a test).

  python bench/dsa_throughput.py [--bs 50] [--px 32] [--device cpu] [--out bench/results/dsa_throughput.json]

Times `DSA(strategy)` on a ready normalised batch through the fastai transform call (what the
DataLoader runs), after 5 warm-up batches. Compare with `fit_throughput.py`: the augmentation
should cost a small fraction of a training step.
"""
import argparse, json, platform, time
from pathlib import Path
import torch
from fastai.torch_core import TensorImage
from gift_fastai.augment import DSA, aug_registry, STRATEGIES


def bench(dsa, x, n):
    for _ in range(5): dsa(x, split_idx=0)
    if x.is_cuda: torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n): dsa(x, split_idx=0)
    if x.is_cuda: torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=50); p.add_argument('--px', type=int, default=32)
    p.add_argument('--n', type=int, default=200); p.add_argument('--device', default='cpu')
    p.add_argument('--out', default='bench/results/dsa_throughput.json')
    a = p.parse_args()
    x = TensorImage(torch.randn(a.bs, 3, a.px, a.px, device=a.device))
    rows = {}
    for s in [*STRATEGIES, *aug_registry.names]:
        dt = bench(DSA(s, seed=0), x, a.n)
        rows[s] = dict(ms_per_batch=round(dt * 1e3, 3), img_s=round(a.bs / dt))
        print(f"{s:10s} {dt * 1e3:7.3f} ms/batch  {a.bs / dt:9.0f} img/s")
    res = dict(bs=a.bs, px=a.px, device=a.device, threads=torch.get_num_threads(), torch=torch.__version__,
               cpu=platform.processor() or platform.machine(), strategies=rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
