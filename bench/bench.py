"""gift-fastai's training speed against the compute bound and a reference-style loop (run by hand: `make bench`).

  python bench/bench.py [--device cpu|cuda] [--seconds 6] [--rounds 3] [--cases c3-32-n100,...] [--out bench/results]

Three ways to run the same training, on the same machine in the same run, each timed in `--rounds` interleaved
rounds of about `--seconds` (the median is reported):

1. bound: the compute bound. The student's forward + backward + AdamW step plus the teacher's forward (no grad) on
   ready, normalised tensors already on the device: no augmentation, no DataLoader, no framework.
2. ours: `distilled_learner(distilled_dls(...)).fit(E)` with DSA ('gift'), teacher relabelling and the GIFT loss.
3. reference: a plain PyTorch loop written the way the released evaluator runs: a DataLoader over a
   TensorDataset of float images with per-sample normalisation and worker processes, the batch copied to the device,
   DSA on the batch, the teacher's forward, KL (T = 20), AdamW, MultiStepLR.

Also: the GIFT step against a KL step (the loss alone, and the bound's whole step with each), the teacher's share
of the step, and RDED's scoring speed (crops scored per second). Synthetic uint8 images and a randomly initialised
teacher of the student's architecture: speed does not depend on what the pixels show.
Writes `<out>/bench-<device>.json` and prints a table.
"""
import argparse, copy, json, math, platform, statistics, sys, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import levers  # noqa: E402  (the speed options: bench/levers.py)

CASES = {  # name: (student, image side, set size N)
    'c3-32-n100': ('convnet3', 32, 100),
    'c3-32-n1000': ('convnet3', 32, 1000),
    'c4-64-n100': ('convnet4', 64, 100),
    'r18-32-n100': ('resnet18_modified', 32, 100),
}


def sync(device):
    if str(device).startswith('cuda'): torch.cuda.synchronize()


def make_case(arch, px, n, classes=10, device='cpu', seed=0):
    "A synthetic distilled set of `n` uint8 images and a teacher of architecture `arch` (eval mode, on `device`)."
    from gift_fastai.data import DistilledSet
    from gift_fastai.models import create_student
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(math.ceil(n / classes))[:n]
    imgs = torch.randint(0, 256, (n, 3, px, px), generator=g, dtype=torch.uint8)
    dset = DistilledSet(imgs, labels, classes=[f'c{i}' for i in range(classes)])
    torch.manual_seed(seed)
    teacher = create_student(arch, classes, 3, px).to(device).eval()
    return dset, teacher


def student(arch, dset, device, seed=1):
    from gift_fastai.models import create_student
    torch.manual_seed(seed)
    return create_student(arch, dset.n_classes, 3, dset.shape[1]).to(device)


def timed(run_steps, seconds, warmup=2):
    "Images per second of `run_steps(k)` (which trains k steps and returns the images seen), sized to about `seconds`."
    run_steps(warmup)
    t0 = time.perf_counter(); run_steps(1); dt = time.perf_counter() - t0
    k = max(2, int(seconds / max(dt, 1e-6)))
    t0 = time.perf_counter(); n = run_steps(k)
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------- 1. compute bound
def bound_runner(arch, dset, teacher, device, loss='gift', use_teacher=True, settings=None):
    "The bare step on ready tensors: returns run_steps(k)."
    teacher = copy.deepcopy(teacher)  # every runner its own teacher: layouts set by one must not reach another
    from gift_fastai.data import paper_bs
    from gift_fastai.losses import get_loss
    s = settings or levers.resolve(device=device)
    mean, std = (torch.tensor(v)[:, None, None] for v in dset.stats)
    x_all = ((dset.images.float() / 255 - mean) / std).to(device)
    y_all = dset.labels.to(device)
    soft_all = torch.randn(len(dset), dset.n_classes, device=device)  # stored soft labels when the teacher is off
    model = student(arch, dset, device)
    model, teach = levers.prepare(model, teacher, s)
    lf = get_loss(loss, check=False)  # (no input checks: a bare step; our path checks the first batch of each epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, foreach=True)  # (CUDA's default; the library's too)
    bs, n = paper_bs(len(dset)), len(dset)
    model.train()
    state = dict(perm=torch.randperm(n, device=device), i=0)

    def run_steps(k):
        seen = 0
        for _ in range(k):
            if state['i'] + bs > n: state.update(perm=torch.randperm(n, device=device), i=0)
            idx = state['perm'][state['i']:state['i'] + bs]; state['i'] += bs
            xb, yb = levers.to_input(x_all[idx], s), y_all[idx]
            t = teach(xb) if use_teacher else soft_all[idx]
            with levers.student_ctx(s, device):
                z = model(xb)
            l = lf(z.float(), yb, t)
            opt.zero_grad(set_to_none=True); l.backward(); opt.step()
            seen += len(idx)
        sync(device)
        return seen
    return run_steps


# ---------------------------------------------------------------------------------------------------- 2. our path
def ours_runner(arch, dset, teacher, device, loss='gift', settings=None):
    "distilled_learner(...).fit(k epochs): returns run_steps(k) where a 'step' is an epoch here."
    teacher = copy.deepcopy(teacher)
    from gift_fastai.data import distilled_dls
    from gift_fastai.learner import distilled_learner
    s = settings or levers.resolve(device=device)
    dls = distilled_dls(dset, aug='gift', device=device, seed=0)
    torch.manual_seed(1)
    learn = distilled_learner(dls, arch, teacher=teacher, loss=loss, **levers.learner_kwargs(s))

    def run_steps(k):
        with learn.no_bar(), learn.no_logging(): learn.fit(k)
        sync(device)
        return k * len(dset)
    return run_steps


# ---------------------------------------------------------------------------------------------------- 3. reference loop
class _NormalisedImages(torch.utils.data.Dataset):
    "A TensorDataset of float images in [0,1] that normalises each sample as it is read (what the evaluator does)."
    def __init__(self, x, y, mean, std): self.x, self.y, self.mean, self.std = x, y, mean, std
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return (self.x[i] - self.mean) / self.std, self.y[i]


def reference_runner(arch, dset, teacher, device, workers=2, T=20.):
    "A plain loop as the released evaluator runs: returns run_steps(k) where a 'step' is an epoch."
    teacher = copy.deepcopy(teacher)
    from gift_fastai.augment import DSA
    from gift_fastai.data import paper_bs
    mean, std = (torch.tensor(v)[:, None, None] for v in dset.stats)
    ds = _NormalisedImages(dset.images.float() / 255, dset.labels, mean, std)
    cuda = str(device).startswith('cuda')
    dl = torch.utils.data.DataLoader(ds, batch_size=paper_bs(len(dset)), shuffle=True, num_workers=workers,
                                     pin_memory=cuda)
    model = student(arch, dset, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [10 ** 6], gamma=0.2)  # stepped per epoch, as the evaluator
    dsa = DSA('gift', seed=0)
    kl = nn.KLDivLoss(reduction='batchmean')

    def run_steps(k):
        model.train()
        for _ in range(k):
            for x, y in dl:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x = dsa.apply(x, dsa.sample(x))
                with torch.no_grad(): t = teacher(x)
                z = model(x)
                l = kl(F.log_softmax(z / T, 1), F.softmax(t / T, 1))
                opt.zero_grad(); l.backward(); opt.step()
            sched.step()
        sync(device)
        return k * len(dset)
    return run_steps


# ---------------------------------------------------------------------------------------------------- extras
def loss_us(loss, B, C, device, reps=2000):
    "Microseconds of one forward + backward of `loss` on [B,C] logits."
    from gift_fastai.losses import get_loss
    lf = get_loss(loss)
    z = torch.randn(B, C, device=device, requires_grad=True); t = torch.randn(B, C, device=device)
    y = torch.randint(0, C, (B,), device=device)
    for _ in range(50): lf(z, y, t).backward()
    sync(device); t0 = time.perf_counter()
    for _ in range(reps): lf(z, y, t).backward()
    sync(device)
    return (time.perf_counter() - t0) / reps * 1e6


def teacher_only_runner(arch, dset, teacher, device, settings=None):
    "The teacher's forward alone on the bound's batches."
    teacher = copy.deepcopy(teacher)
    from gift_fastai.data import paper_bs
    s = settings or levers.resolve(device=device)
    mean, std = (torch.tensor(v)[:, None, None] for v in dset.stats)
    x_all = ((dset.images.float() / 255 - mean) / std).to(device)
    _, teach = levers.prepare(nn.Identity(), teacher, s)
    bs = paper_bs(len(dset))

    def run_steps(k):
        for i in range(k):
            j = (i * bs) % max(1, len(dset) - bs + 1)
            teach(levers.to_input(x_all[j:j + bs], s))
        sync(device)
        return k * bs
    return run_steps


def rded_rate(device):
    "Crops scored per second by `rded` (ConvNet-3 teacher, 32 px, 10 classes, 100 candidates x 5 crops per class)."
    from gift_fastai.distill import rded
    train, teacher = make_case('convnet3', 32, 1000, device=device)
    rded(train, teacher, ipc=1, n_candidates=10, n_crops=5, device=device)  # warm-up
    t0 = time.perf_counter(); rded(train, teacher, ipc=10, n_candidates=100, n_crops=5, device=device); sync(device)
    return 10 * 100 * 5 / (time.perf_counter() - t0)


def interleaved(runners:dict, seconds:float, rounds:int) -> tuple:
    "The median images/s of each runner and every round's figure, the runners taking turns (a slow spell hits them alike)."
    rates = {k: [] for k in runners}
    for r in range(rounds):
        for k, run in runners.items(): rates[k].append(timed(run, seconds / rounds, warmup=1 if r else 2))
    return {k: statistics.median(v) for k, v in rates.items()}, rates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--seconds', type=float, default=10., help='time per path and case, split over the rounds')
    p.add_argument('--rounds', type=int, default=5, help='interleaved rounds per path (the median is reported)')
    p.add_argument('--cases', default=','.join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument('--workers', type=int, default=2, help="the reference loop's DataLoader workers")
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'fp16'], help="distilled_learner's precision")
    p.add_argument('--teacher-precision', default=None, choices=['fp32', 'bf16', 'fp16'], help="(default: as --precision)")
    p.add_argument('--channels-last', default='auto', choices=['auto', 'on', 'off'], help="auto: the library's default")
    p.add_argument('--malloc', default='tuned', choices=['tuned', 'default'], help="tune_allocator (the default) or glibc's own")
    p.add_argument('--compile', default='off', choices=['off', 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'],
                   help="torch.compile the student and the teacher, in the bound and in ours (distilled_learner(compile=)); the reference "
                        "loop stays eager")
    p.add_argument('--skip', default='', help="parts to skip: reference, loss, teacher, rded")
    p.add_argument('--out', default='bench/results')
    a = p.parse_args(argv)
    st = levers.resolve(a.precision, a.teacher_precision, dict(auto=None, on=True, off=False)[a.channels_last], a.device,
                        a.malloc == 'tuned', None if a.compile == 'off' else a.compile)
    skip = set(filter(None, a.skip.split(',')))
    torch.backends.cudnn.benchmark = True
    res = dict(device=a.device, threads=torch.get_num_threads(), torch=torch.__version__,
               cpu=platform.processor() or platform.machine(), gpu=torch.cuda.get_device_name() if a.device.startswith('cuda') else None,
               settings=st, seconds=a.seconds, rounds=a.rounds, cases={})
    for name in a.cases.split(','):
        arch, px, n = CASES[name]
        dset, teacher = make_case(arch, px, n, device=a.device)
        runners = dict(bound=bound_runner(arch, dset, teacher, a.device, settings=st),
                       ours=ours_runner(arch, dset, teacher, a.device, settings=st))
        if 'reference' not in skip: runners['reference'] = reference_runner(arch, dset, teacher, a.device, a.workers)
        med, rates = interleaved(runners, a.seconds, a.rounds)
        row = dict(arch=arch, px=px, n=n, **{f'{k}_img_s': round(v, 1) for k, v in med.items()},
                   rounds={k: [round(x, 1) for x in v] for k, v in rates.items()})
        row['ours_over_bound'] = round(row['ours_img_s'] / row['bound_img_s'], 3)
        if 'reference_img_s' in row: row['ours_over_reference'] = round(row['ours_img_s'] / row['reference_img_s'], 3)
        res['cases'][name] = row
        print(name, {k: v for k, v in row.items() if k != 'rounds'}, flush=True)
    arch, px, n = CASES['c3-32-n100']
    dset, teacher = make_case(arch, px, n, device=a.device)
    if 'loss' not in skip:
        us = {l: round(loss_us(l, 50, 10, a.device), 1) for l in ('gift', 'kl')}
        run = dict(gift=bound_runner(arch, dset, teacher, a.device, 'gift', settings=st),
                   kl=bound_runner(arch, dset, teacher, a.device, 'kl', settings=st))
        med, _ = interleaved(run, a.seconds, a.rounds)
        res['gift_vs_kl'] = dict(case='c3-32-n100', loss_us=us, loss_ratio=round(us['gift'] / us['kl'], 3),
                                 step_img_s={k: round(v, 1) for k, v in med.items()},
                                 step_ratio=round(med['kl'] / med['gift'], 3))  # GIFT step time / KL step time
        print('gift_vs_kl', res['gift_vs_kl'], flush=True)
    if 'teacher' not in skip:
        run = dict(with_teacher=bound_runner(arch, dset, teacher, a.device, settings=st),
                   without=bound_runner(arch, dset, teacher, a.device, use_teacher=False, settings=st),
                   teacher_only=teacher_only_runner(arch, dset, teacher, a.device, settings=st))
        med, _ = interleaved(run, a.seconds, a.rounds)
        res['teacher_share'] = dict(case='c3-32-n100', **{f'{k}_img_s': round(v, 1) for k, v in med.items()},
                                    share=round(1 - med['with_teacher'] / med['without'], 3),
                                    forward_share=round(med['with_teacher'] / med['teacher_only'], 3))
        print('teacher_share', res['teacher_share'], flush=True)
    if 'rded' not in skip:
        res['rded'] = dict(crops_per_s=round(rded_rate(a.device), 1), teacher='convnet3', px=32)
        print('rded', res['rded'], flush=True)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    f = out / f"bench-{a.device.split(':')[0]}-{levers.label(st)}.json"
    f.write_text(json.dumps(res, indent=1) + '\n')
    table(res)
    print(f"wrote {f}")
    return res


def table(res):
    "Print the results as a rich table."
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"gift-fastai training speed, images/s ({res['device']}, {res['threads']} threads"
                    f"{', ' + res['gpu'] if res.get('gpu') else ''}, {levers.label(res['settings'])})")
    for c in ('case', 'bound', 'ours', 'reference', 'ours/bound', 'ours/reference'): t.add_column(c, justify='right')
    for name, r in res['cases'].items():
        t.add_row(f"{r['arch']} {r['px']}px N={r['n']}", f"{r['bound_img_s']:.0f}", f"{r['ours_img_s']:.0f}",
                  f"{r.get('reference_img_s', float('nan')):.0f}", f"{r['ours_over_bound']:.3f}",
                  f"{r.get('ours_over_reference', float('nan')):.2f}")
    c = Console(width=max(120, Console().width)); c.print(t)
    if 'gift_vs_kl' in res:
        g = res['gift_vs_kl']
        c.print(f"GIFT vs KL: loss fwd+bwd {g['loss_us']['gift']} vs {g['loss_us']['kl']} µs (x{g['loss_ratio']}); "
                f"whole bound step GIFT/KL time x{g['step_ratio']}")
    if 'teacher_share' in res:
        s = res['teacher_share']
        c.print(f"teacher's share of the bound step: {s['share']:.1%} ({s['with_teacher_img_s']} img/s with, "
                f"{s['without_img_s']} without, teacher forward alone {s['teacher_only_img_s']} img/s)")
    if 'rded' in res: c.print(f"RDED scoring: {res['rded']['crops_per_s']:.0f} crops/s (ConvNet-3 teacher, 32 px)")


if __name__ == '__main__': main()
