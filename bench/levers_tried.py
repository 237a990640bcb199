"""Speed levers that were measured and not kept, so that anyone can measure them again (run by hand).

  python bench/levers_tried.py [--device cpu|cuda] [--out bench/results/levers-tried-<device>.json]

1. A vectorised ensemble: R students trained as one with `torch.func` (stack_module_state + vmap; in the library: `stack_seeds`), against the
   same R students stepped one after the other; ConvNet-3, 32 px, batch 50, GIFT, AdamW, ready tensors.
2. `torch.compile` of the student: compile time, then images/s of the bare step against eager mode; on CUDA also
   `mode='reduce-overhead'` (CUDA graphs: the small student's many short kernels launched as one graph).
Both on the settings our path uses (channels-last, `tune_allocator`). `make gpu-check` runs it with `--device cuda`.
"""
import argparse, copy, json, platform, statistics, time
from pathlib import Path
import torch
from torch.func import stack_module_state, functional_call, vmap
from gift_fastai.learner import tune_allocator
from gift_fastai.models import create_student
from gift_fastai.losses import get_loss

B = 50
cl = lambda t: t.contiguous(memory_format=torch.channels_last)


def rates(runners, rounds=3, k=4):
    out = {n: [] for n in runners}
    for _ in range(rounds):
        for n, f in runners.items():
            t0 = time.perf_counter(); m = f(k); out[n].append(m / (time.perf_counter() - t0))
    return {n: round(statistics.median(v), 1) for n, v in out.items()}


def _sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()


def ensemble(R, norm, device='cpu'):
    models = [create_student('convnet', 10, 3, 32, depth=3, norm=norm).to(device, memory_format=torch.channels_last) for _ in range(R)]
    x, y, t = torch.randn(R, B, 3, 32, 32, device=device), torch.randint(0, 10, (R, B), device=device), torch.randn(R, B, 10, device=device)
    lf = get_loss('gift')
    opts = [torch.optim.AdamW(m.parameters(), 1e-3, weight_decay=1e-4) for m in models]

    def one_by_one(k):
        for _ in range(k):
            for m, o, xb, yb, tb in zip(models, opts, x, y, t):
                l = lf(m(cl(xb)), yb, tb); o.zero_grad(); l.backward(); o.step()
        _sync(device); return k * R * B
    params, buffers = stack_module_state(copy.deepcopy(models))
    params = {n: torch.nn.Parameter(v) for n, v in params.items()}
    opt = torch.optim.AdamW(params.values(), 1e-3, weight_decay=1e-4)  # elementwise: the same as one AdamW per model
    base = copy.deepcopy(models[0]).to('meta')
    fwd = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), randomness='different')

    def vectorised(k):
        for _ in range(k):
            z = fwd(params, buffers, x)
            l = sum(lf(z[r], y[r], t[r]) for r in range(R)); opt.zero_grad(); l.backward(); opt.step()
        _sync(device); return k * R * B
    one_by_one(2); vectorised(2)
    return rates(dict(one_by_one=one_by_one, vectorised=vectorised))


def compiled(device='cpu'):
    x, y, t = cl(torch.randn(B, 3, 32, 32, device=device)), torch.randint(0, 10, (B,), device=device), torch.randn(B, 10, device=device)
    lf = get_loss('gift', check=False)

    def make(mode):
        torch.manual_seed(0)
        m = create_student('convnet3', 10, 3, 32).to(device, memory_format=torch.channels_last)
        o = torch.optim.AdamW(m.parameters(), 1e-3, weight_decay=1e-4, foreach=True)
        f = m if mode is None else torch.compile(m, mode=mode)
        def run(k):
            for _ in range(k):
                l = lf(f(x), y, t); o.zero_grad(); l.backward(); o.step()
            _sync(device); return k * B
        return run
    modes = {'compiled': 'default', **({'cuda_graphs': 'reduce-overhead'} if torch.device(device).type == 'cuda' else {})}
    runs, secs = dict(eager=make(None)), {}
    for n, mode in modes.items():
        runs[n] = make(mode); t0 = time.perf_counter(); runs[n](3); secs[n] = round(time.perf_counter() - t0, 1)
    runs['eager'](2)
    return dict(compile_seconds=secs, **rates(runs, rounds=4, k=6))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default=None, help="default: bench/results/levers-tried-<device>.json")
    a = p.parse_args(argv)
    a.out = a.out or f"bench/results/levers-tried-{torch.device(a.device).type}.json"
    tune_allocator()
    res = dict(device=a.device, threads=torch.get_num_threads(), torch=torch.__version__, cpu=platform.processor() or platform.machine(),
               gpu=torch.cuda.get_device_name() if torch.device(a.device).type == 'cuda' else None,
               ensemble={f'R=3 {n} norm': ensemble(3, n, a.device) for n in ('batch', 'instance')}, compile=compiled(a.device))
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1) + '\n')


if __name__ == '__main__': main()
