"""How many ATen operators one training step launches: the bare step (the bound) against the library's real path (run by hand).

  python bench/op_count.py [--bs 50] [--ipc 10] [--classes 100] [--skip-what-if] [--out bench/results]

What is counted. `torch.profiler` (CPU activity only; no shapes, no stacks) records every operator the dispatcher
runs. An operator is *top-level* when its name starts with `aten::` and none of its ancestors in the profiler's
event tree (`FunctionEvent.cpu_parent`, followed to the root) is an `aten::` operator. Ancestors that are not ATen
operators - our own `record_function` ranges (named `opc/...`), torch's `Optimizer.step#AdamW.step`, the autograd
engine's `autograd::engine::evaluate_function: ...` nodes - do not hide an operator, so every operator a backward node
calls counts once, and `aten::conv2d` counts once whatever it dispatches to underneath (`aten::convolution`,
`aten::_convolution`, `aten::mkldnn_convolution`, ...). The same rule counts both paths. (The stricter reading,
"the immediate parent is not an `aten::` operator", is computed as a check and recorded too.) Operators are counted
on the CPU, but the count of top-level operators does not depend on the device (what they dispatch to does). Both
paths step AdamW with `foreach=True` (a few `_foreach_*` operators for all parameters): CUDA's default, and the
library's optimizers on every device; torch's CPU default steps each parameter alone (about 100 operators more for
ConvNet-3, the same weights bit for bit).

The case: ConvNet-3 student and a ConvNet-3 teacher (`create_student` + `as_teacher`, randomly initialised),
CIFAR-100-shaped synthetic data (3x32x32 uint8, 100 classes, IPC 10: 1000 images, `DistilledSet`), batch `--bs`
(50), float32, channels-last (the library's CPU default; `bench/levers.py` applies the same to the bound).

1. bound: the bare step of `bench/bench.py`'s `bound_runner` (a copy here with phase ranges, at `--bs`): index the
   pre-normalised images, channels-last copy, the teacher's forward (inference mode), the student's forward, the
   GIFT loss, `zero_grad(set_to_none=True)`, backward, `torch.optim.AdamW.step`. Two warm-up steps, then one
   epoch's steps (N / bs, so its one `randperm` per epoch is counted as ours is). Its total is checked against
   `bench.bound_runner` itself, unmodified (5 steps inside one permutation; its own batch size).
2. ours: `gift_fastai.engine.fit_run` on a `Run` under the 'gift' protocol (DSA 'gift' augmentation, the teacher
   relabelling every batch, the GIFT loss, AdamW and the protocol's multi-step schedule, fastai's Recorder and the
   protocol's callbacks), `bs` set to `--bs` and 2 epochs. The profiler runs from `before_train` to `after_train`
   of the second epoch (the first is the warm-up; validation is outside the window: it runs once, after the last
   epoch), and the total is divided by the epoch's batches (per-epoch work such as the loader's shuffle is thus
   spread over them). Phases: a callback at order -1000 and one at 1000 bracket every fastai event, so the code
   between events (the loader, the student's forward, the loss, backward, the optimizer step, zero_grad) gets a
   range of its own, and `Callback.__call__`, the fastai batch transforms (`Transform.__call__`), the DSA ops,
   the loader's gather and the loss's `forward` are wrapped in ranges for the time of the measurement (patched in
   this process only, restored after; a range adds no ATen operator and changes no number). Every top-level
   operator is attributed to its innermost `opc/...` range.

The DSA 'gift' strategy draws one of crop | scale | rotate per batch, so a step's count depends on the draw; the
per-branch counts are reported and `ours.per_step_expected` is the count with the three drawn equally often.

What-ifs that change nothing in the library (the same bound loop, another optimizer setting; the loss alone): AdamW
with `foreach=True` and with `fused=True` on the CPU (their counts, and whether the parameters after an epoch are
bitwise equal to the default's), and the GIFT loss's forward with its input checks and with `check=False`.

Writes `<out>/op-count.json` (totals, per phase, per range, per operator, the difference by phase and by operator,
the callbacks, the what-ifs) and prints tables. About 80 s on 2 CPU cores.
"""
import argparse, collections, contextlib, copy, functools, json, math, platform, re, sys, time, warnings
from pathlib import Path
import torch
from torch.autograd.profiler import record_function
from torch.profiler import profile, ProfilerActivity

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import levers  # noqa: E402  (the library's speed settings applied by hand to the bare loop: bench/levers.py)

PREFIX = 'opc/'


# ---------------------------------------------------------------------------------------------------- counting
def _is_aten(e) -> bool: return e.name.startswith('aten::')


def _label(e):
    "The innermost `opc/...` range around event `e` (its name without the '#k' instance suffix), or None."
    p = e.cpu_parent
    while p is not None:
        if p.name.startswith(PREFIX): return p.name
        p = p.cpu_parent
    return None


def top_level(events) -> list:
    "[(op name, range name or None)] of the top-level ATen operators: no `aten::` ancestor."
    out = []
    for e in events:
        if not _is_aten(e): continue
        p, nested = e.cpu_parent, False
        while p is not None:
            if _is_aten(p): nested = True; break
            p = p.cpu_parent
        if not nested: out.append((e.name, _label(e)))
    return out


def top_level_immediate(events) -> int:
    "The count under the stricter rule: an `aten::` operator whose immediate parent is not one."
    return sum(1 for e in events if _is_aten(e) and (e.cpu_parent is None or not _is_aten(e.cpu_parent)))


def _base(name):
    "A range's name without the prefix and the '#k' instance suffix."
    return None if name is None else re.sub(r'#\d+$', '', name).removeprefix(PREFIX)


def summarise(ops:list, steps:int) -> dict:
    "Totals per step, by operator, by range and by (range, operator)."
    by_op = collections.Counter(o for o, _ in ops)
    by_phase = collections.Counter(_base(r) or '(outside every range)' for _, r in ops)
    by_both = collections.Counter((_base(r) or '(outside every range)', o) for o, r in ops)
    per = lambda c: {k: round(v / steps, 3) for k, v in c.most_common()}
    return dict(steps=steps, total=len(ops), per_step=round(len(ops) / steps, 2), per_op=per(by_op), per_range=per(by_phase),
                per_range_op={f"{p} | {o}": round(v / steps, 3) for (p, o), v in by_both.most_common()})


# ---------------------------------------------------------------------------------------------------- ranges
class Span:
    "One open `record_function` range at a time: `to(name)` closes the open one and opens `name` (None: open none)."
    def __init__(self): self.cur = None
    def to(self, name=None):
        if self.cur is not None: self.cur.__exit__(None, None, None); self.cur = None
        if name is not None: self.cur = record_function(PREFIX + name); self.cur.__enter__()


_ACTIVE = [False]  # the wrappers open ranges only while a measurement runs


def _ranged(label, fn):
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        name = label(self, *args) if _ACTIVE[0] else None
        if name is None: return fn(self, *args, **kwargs)
        with record_function(PREFIX + name): return fn(self, *args, **kwargs)
    return wrapper


@contextlib.contextmanager
def patched(targets):
    "Wrap `owner.attr` in a range named `label(self, *args)` for each (owner, attr, label); put the originals back after."
    saved = []
    try:
        for owner, attr, label in targets:
            orig = owner.__dict__[attr]; saved.append((owner, attr, orig))
            setattr(owner, attr, _ranged(label, orig))
        yield
    finally:
        for owner, attr, orig in reversed(saved): setattr(owner, attr, orig)


def _subclasses(cls):
    for c in cls.__subclasses__(): yield c; yield from _subclasses(c)


def range_targets(teacher):
    "What the measurements wrap: fastai's callbacks and batch transforms, the DSA ops, the loader's gather, the loss, the models."
    from fastai.callback.core import Callback
    from fasttransform.transform import Transform
    from gift_fastai.augment import AugOp, DSA
    from gift_fastai.data import DistilledDL
    from gift_fastai.losses import SoftLabelLoss
    t = [(Callback, '__call__', lambda self, ev, *a: None if isinstance(self, _Marker) else f"cb/{type(self).__name__}.{ev}"),
         (Transform, '__call__', lambda self, *a: f"data/tfm/{type(self).__name__}"),
         (DSA, 'sample', lambda self, *a: 'aug/DSA.sample'), (DSA, 'apply', lambda self, *a: 'aug/DSA.apply'),
         (DistilledDL, '_batch', lambda self, *a: 'data/gather'),
         (SoftLabelLoss, 'forward', lambda self, *a: 'loss/forward'),
         (type(teacher), 'forward', lambda self, *a: 'teacher/forward' if getattr(self, '_opc_teacher', False) else 'student/forward')]
    for c in _subclasses(AugOp):
        for m in ('sample', 'apply'):
            if m in c.__dict__: t.append((c, m, (lambda m: lambda self, *a: f"aug/{self.name}.{m}")(m)))
    return t


# ---------------------------------------------------------------------------------------------------- the case
def make_case(ipc:int, classes:int, px:int=32, seed:int=0):
    "A synthetic CIFAR-100-shaped distilled set (uint8, class-major), a test set of one image per class, a ConvNet-3 teacher."
    from gift_fastai.data import DistilledSet
    from gift_fastai.models import create_student
    from gift_fastai.teachers import as_teacher
    g = torch.Generator().manual_seed(seed)
    names = [f'c{i}' for i in range(classes)]
    dset = DistilledSet(torch.randint(0, 256, (ipc * classes, 3, px, px), generator=g, dtype=torch.uint8),
                        torch.arange(classes).repeat_interleave(ipc), classes=names)
    test = DistilledSet(torch.randint(0, 256, (classes, 3, px, px), generator=g, dtype=torch.uint8), torch.arange(classes), classes=names)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = as_teacher(create_student('convnet3', classes, 3, px).eval(), names, *dset.stats)
    return dset, test, teacher


# ---------------------------------------------------------------------------------------------------- 1. the bound
def bound_counts(dset, teacher, bs:int, warmup:int=2, optimizer_kwargs=None) -> tuple:
    "`bench.bound_runner`'s step with a range per phase, one epoch of steps after `warmup` profiled: ([(op, range)], steps, events, parameters after)."
    from gift_fastai.losses import get_loss
    from gift_fastai.models import create_student
    teacher = copy.deepcopy(teacher)
    s = levers.resolve(device='cpu')
    mean, std = (torch.tensor(v)[:, None, None] for v in dset.stats)
    x_all, y_all = (dset.images.float() / 255 - mean) / std, dset.labels
    torch.manual_seed(1)
    model = create_student('convnet3', dset.n_classes, 3, dset.shape[1])
    model, teach = levers.prepare(model, teacher, s)
    lf = get_loss('gift', check=False)  # (the bare step: no input checks; ours checks the first batch of each epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, **{'foreach': not (optimizer_kwargs or {}).get('fused'), **(optimizer_kwargs or {})})
    n = len(dset)
    model.train()
    state = dict(perm=torch.randperm(n), i=0)
    span = Span()

    def step(k):
        span.to(f'data#{k}')
        if state['i'] + bs > n: state.update(perm=torch.randperm(n), i=0)
        idx = state['perm'][state['i']:state['i'] + bs]; state['i'] += bs
        xb, yb = x_all[idx], y_all[idx]
        span.to(f'layout#{k}'); xb = levers.to_input(xb, s)
        span.to(f'teacher#{k}'); t = teach(xb)  # (its forward: range teacher/forward)
        span.to(f'student_forward#{k}')
        with levers.student_ctx(s, 'cpu'): z = model(xb)
        span.to(f'loss#{k}'); l = lf(z.float(), yb, t)
        span.to(f'zero_grad#{k}'); opt.zero_grad(set_to_none=True)
        span.to(f'backward#{k}'); l.backward()
        span.to(f'optimizer_step#{k}'); opt.step()
        span.to(None)

    for k in range(warmup): step(k)
    steps = math.ceil(n / bs)
    _ACTIVE[0] = True
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for k in range(steps): step(warmup + k)
    finally: _ACTIVE[0] = False
    ev = prof.events()
    return top_level(ev), steps, ev, [p.detach().clone() for p in model.parameters()]


def bench_bound_check(dset, teacher, steps:int=5) -> float:
    "Top-level operators per step of `bench.bound_runner` itself (unmodified; its own batch size), inside one permutation."
    import bench
    run = bench.bound_runner('convnet3', dset, teacher, 'cpu')
    run(2)
    with profile(activities=[ProfilerActivity.CPU]) as prof: run(steps)
    return len(top_level(prof.events())) / steps


# ---------------------------------------------------------------------------------------------------- 2. our path
class _Marker:
    "Callbacks whose events are not wrapped (they open and close the ranges between events)."


def _markers(epoch:int):
    from fastai.callback.core import Callback
    # fastai's training loop (Learner.one_batch, _do_one_batch, _do_grad_opt): what runs between an event and the next
    GAP_AFTER = dict(before_train='data', after_batch='data', before_batch='student_forward', after_pred='loss',
                     after_loss='between_events', before_backward='backward', after_backward='between_events',
                     before_step='optimizer_step', after_step='zero_grad')
    EVENTS = ('before_train', 'before_batch', 'after_pred', 'after_loss', 'before_backward', 'after_backward', 'before_step',
              'after_step', 'after_batch', 'after_train')

    class OpcFirst(_Marker, Callback):
        "Runs first at every event: closes the range of the code since the previous event (starts the profiler)."
        order, run_valid = -1000, False
        def __init__(self): self.span, self.prof, self.n, self.seconds = Span(), None, None, None
        def on(self): return self.prof is not None and self.training and self.epoch == epoch
    for ev in EVENTS:
        def f(self, ev=ev):
            if ev == 'before_train' and self.epoch == epoch:  # (before TrainEvalCallback sets training)
                self.cbs_seen = [type(cb).__name__ for cb in self.learn.cbs.sorted('order') if not isinstance(cb, _Marker)]
                self.prof = profile(activities=[ProfilerActivity.CPU]); self.prof.start(); _ACTIVE[0] = True
                self.t0 = time.perf_counter()
            elif self.on(): self.span.to(None)
        setattr(OpcFirst, ev, f)

    class OpcLast(_Marker, Callback):
        "Runs last at every event: opens the range of the code until the next event (stops the profiler after the epoch)."
        order, run_valid = 1000, False
        def __init__(self, first): self.first = first
    for ev in EVENTS:
        def g(self, ev=ev):
            fst = self.first
            if not fst.on(): return
            if ev == 'after_train':
                fst.span.to(None); _ACTIVE[0] = False; fst.prof.stop()
                fst.seconds, fst.n = time.perf_counter() - fst.t0, self.n_iter
                fst.prof_done, fst.prof = fst.prof, None
            elif ev in GAP_AFTER: fst.span.to(f"{GAP_AFTER[ev]}#{self.iter if ev != 'before_train' else 0}")
        setattr(OpcLast, ev, g)
    first = OpcFirst()
    return first, OpcLast(first)


def ours_counts(dset, test, teacher, bs:int, epochs:int=2) -> tuple:
    "`fit_run` of the 'gift' protocol at batch `bs` for `epochs`, the last epoch's training profiled: ([(op, range)], steps, events, result, seconds, callbacks, protocol)."
    from gift_fastai.engine import Run, fit_run
    from gift_fastai.protocols import get_protocol
    p = get_protocol('gift').replace(epochs=epochs, bs=bs, eval_every=0)  # (tested after the last epoch only)
    run = Run(dset, test, teacher=teacher, arch='convnet3', loss='gift', protocol=p, seed=0)
    first, last = _markers(epochs - 1)
    res = fit_run(run, device='cpu', cbs=[first, last])
    ev = first.prof_done.events()
    return top_level(ev), first.n, ev, res, first.seconds, first.cbs_seen, p


# ---------------------------------------------------------------------------------------------------- attribution
# each range -> the phase it belongs to; the phases line the two paths up
PHASES = {
    'data': "data: loader (fastai's iteration, to_device in the loader and in Learner._set_device; the bound: indexing)",
    'data/gather': "data: loader (fastai's iteration, to_device in the loader and in Learner._set_device; the bound: indexing)",
    'cb/CastToTensor.before_batch': "data: fastai's CastToTensor (typed tensors back to plain ones)",
    'data/tfm/IntToFloatTensor': "data: uint8 -> float, Normalize (the bound stores normalised floats)",
    'data/tfm/Normalize': "data: uint8 -> float, Normalize (the bound stores normalised floats)",
    'data/tfm/DSA': "augmentation (DSA)",
    'layout': "channels-last copy of the batch",
    'cb/ChannelsLastAll.before_batch': "channels-last copy of the batch",
    'student_forward': "student forward", 'student/forward': "student forward",
    'teacher/forward': "teacher forward",
    'teacher': "teacher relabel around the forward (bound: .float(), clone)",
    'cb/TeacherRelabel.after_pred': "teacher relabel around the forward (bound: .float(), clone)",
    'loss': "loss", 'loss/forward': "loss",
    'backward': "backward", 'optimizer_step': "optimizer step", 'zero_grad': "zero_grad",
}


def phase_of(name):
    if name in PHASES: return PHASES[name]
    if name.startswith('aug/'): return 'augmentation (DSA)'
    if name.startswith('cb/Recorder'): return "fastai's Recorder (smooth loss, lrs, losses)"
    if name.startswith('cb/'): return 'other callbacks'
    return 'other'


def ops_in(ops, steps, rng) -> float:
    "Top-level operators per step in range `rng`."
    return round(sum(1 for _, r in ops if _base(r) == rng) / steps, 2)


def dsa_branches(ops, ev, steps) -> dict:
    "Per DSA op: how often it ran in the window and its top-level operators per use (sample + apply)."
    uses = collections.Counter()
    for e in ev:
        m = re.fullmatch(PREFIX + r'aug/(\w+)\.apply', e.name)  # (events: the full range names)
        if m and m.group(1) != 'DSA': uses[m.group(1)] += 1
    cnt = collections.Counter()
    for _, r in ops:
        m = re.fullmatch(PREFIX + r'aug/(\w+)\.(sample|apply)', r or '')  # (the full range name)
        if m and m.group(1) != 'DSA': cnt[m.group(1)] += 1
    return {k: dict(uses=uses[k], ops_per_use=round(cnt[k] / uses[k], 2)) for k in sorted(uses) if cnt[k]}


def expected_per_step(ours:dict, branches:dict, group=('crop', 'scale', 'rotate')) -> float:
    "Ours per step with the DSA group's ops drawn equally often (instead of as drawn in the window)."
    drawn = sum(branches[k]['uses'] * branches[k]['ops_per_use'] for k in group if k in branches) / ours['steps']
    even = sum(branches[k]['ops_per_use'] for k in group if k in branches) / len([k for k in group if k in branches])
    return round(ours['per_step'] - drawn + even, 2)


def coarse(s:dict) -> dict:
    "Operators per step by phase (`phase_of` of each range)."
    out = collections.Counter()
    for k, v in s['per_range'].items(): out[phase_of(k)] += v
    return {k: round(v, 2) for k, v in out.most_common()}


def sources(b:dict, o:dict) -> dict:
    "Per phase: bound, ours, extra, and the operators that make the extra (ours minus bound, per step), largest extra first."
    ops = {}
    for s, name in ((b, 'bound'), (o, 'ours')):
        c = collections.defaultdict(collections.Counter)
        for k, v in s['per_range_op'].items():
            r, op = k.split(' | '); c[phase_of(r)][op] += v
        ops[name] = c
    out = {}
    for ph in set(ops['bound']) | set(ops['ours']):
        bb, oo = sum(ops['bound'][ph].values()), sum(ops['ours'][ph].values())
        d = {op: round(ops['ours'][ph][op] - ops['bound'][ph][op], 3) for op in set(ops['bound'][ph]) | set(ops['ours'][ph])}
        out[ph] = dict(bound=round(bb, 2), ours=round(oo, 2), extra=round(oo - bb, 2),
                       extra_ops={k: v for k, v in sorted(d.items(), key=lambda kv: -abs(kv[1])) if abs(v) > 1e-9})
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]['extra'], -kv[1]['ours'])))


def fine_with_ops(s:dict) -> dict:
    "Per range: its operators per step (a range of the bound named as ours is compared by name)."
    out = collections.defaultdict(dict)
    for k, v in s['per_range_op'].items():
        p, o = k.split(' | '); out[p][o] = v
    return out


# ---------------------------------------------------------------------------------------------------- what-ifs (no library change)
def optimizer_variants(dset, teacher, bs:int, base_params) -> dict:
    "The bound's top-level operators per step with AdamW `foreach=True` / `fused=True` on the CPU, and whether its parameters stay bitwise equal."
    out = {}
    for k in ('foreach', 'fused'):
        ops, steps, ev, params = bound_counts(dset, teacher, bs, optimizer_kwargs={k: True})
        opt_ops = sum(1 for _, r in ops if _base(r) == 'optimizer_step')
        out[k] = dict(per_step=round(len(ops) / steps, 2), optimizer_step_per_step=round(opt_ops / steps, 2),
                      bitwise_equal_params_after_epoch=all(torch.equal(a, b) for a, b in zip(base_params, params)))
    return out


def loss_variants(bs:int, classes:int, reps:int=5) -> dict:
    "Top-level operators of the GIFT loss's forward alone (as `SoftLabelLoss.forward` runs it), with its input checks and without (check=False)."
    from gift_fastai.losses import get_loss
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(bs, classes, generator=g), torch.randn(bs, classes, generator=g)
    y = torch.randint(0, classes, (bs,), generator=g)
    out = {}
    for check in (True, False):
        lf = get_loss('gift', check=check)
        lf(z, y, t)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps): v = lf(z, y, t)
        out[f'check_{check}'.lower()] = dict(per_call=len(top_level(prof.events())) / reps,
                                             item_per_call=sum(o == 'aten::item' for o, _ in top_level(prof.events())) / reps)
    out['equal_loss'] = bool(torch.equal(get_loss('gift', check=True)(z, y, t), get_loss('gift', check=False)(z, y, t)))
    return out


# ---------------------------------------------------------------------------------------------------- output
def table(res:dict):
    "Print the results as rich tables."
    from rich.console import Console
    from rich.table import Table
    c = Console(width=max(130, Console().width))
    b, o = res['bound'], res['ours']
    short = lambda d, n=8: ', '.join(f"{k.removeprefix('aten::')} {v:+g}" for k, v in list(d.items())[:n])
    t = Table(title=f"Top-level ATen operators per training step ({res['case']['label']})")
    for col in ('path', 'per step', 'steps profiled', 'note'): t.add_column(col, justify='right')
    t.add_row('bound', f"{b['per_step']:.1f}", str(b['steps']), f"bench.bound_runner itself: {res['checks']['bench_bound_runner_per_step']:.1f}")
    t.add_row('ours', f"{o['per_step']:.1f}", str(o['steps']), f"with crop|scale|rotate drawn evenly: {o['per_step_expected']:.1f}")
    t.add_row('ours/bound', f"{res['ratio']:.3f}", '', f"extra {res['extra_per_step']:+.1f} per step")
    c.print(t)
    t = Table(title="Per phase: operators per step, and the operators that make the extra")
    for col in ('phase', 'bound', 'ours', 'extra', 'extra operators'): t.add_column(col, justify='left' if col in ('phase', 'extra operators') else 'right')
    for ph, d in res['extra_by_source'].items():
        t.add_row(ph, f"{d['bound']:.2f}", f"{d['ours']:.2f}", f"{d['extra']:+.2f}", short(d['extra_ops']))
    c.print(t)
    t = Table(title="Per range (operators per step), the operators in it")
    for col in ('range', 'bound', 'ours', 'operators (ours; the bound\'s where ours has none)'):
        t.add_column(col, justify='right' if col in ('bound', 'ours') else 'left')
    fo, fb = fine_with_ops(o), fine_with_ops(b)
    for r in sorted(set(o['per_range']) | set(b['per_range']), key=lambda r: -max(o['per_range'].get(r, 0), b['per_range'].get(r, 0))):
        ops = fo.get(r) or fb.get(r) or {}
        t.add_row(r, f"{b['per_range'].get(r, 0):.2f}", f"{o['per_range'].get(r, 0):.2f}",
                  ', '.join(f"{k.removeprefix('aten::')} {x:g}" for k, x in sorted(ops.items(), key=lambda kv: -kv[1])[:10]))
    c.print(t)
    t = Table(title="Per operator (per step), by the difference")
    for col in ('operator', 'bound', 'ours', 'extra', 'where the extra ones run (ours minus the bound, by range)'):
        t.add_column(col, justify='left' if col.startswith(('operator', 'where')) else 'right')
    for op, d in res['extra_by_op'].items():
        if abs(d['extra']) < 0.05: continue
        t.add_row(op.removeprefix('aten::'), f"{d['bound']:g}", f"{d['ours']:g}", f"{d['extra']:+.2f}", short(d['where'], 5))
    c.print(t)
    c.print("DSA ops, top-level operators per use (sample + apply), uses in the window: " +
            ', '.join(f"{k} {v['ops_per_use']:g} ({v['uses']}x)" for k, v in o['dsa_branches'].items()))
    for k, w in res['what_if'].items():
        if k == 'loss_checks': continue
        c.print(f"What-if, the bound with AdamW({k}=True) on the CPU: {w['per_step']:.1f} per step (optimizer step "
                f"{w['optimizer_step_per_step']:.1f} instead of {b['per_range'].get('optimizer_step', 0):.1f}); parameters after "
                f"an epoch bitwise equal to the default's: {w['bitwise_equal_params_after_epoch']}")
    lc = res['what_if'].get('loss_checks')
    if lc: c.print(f"What-if, the GIFT loss's forward alone: {lc['check_true']['per_call']:g} operators with its input checks "
            f"({lc['check_true']['item_per_call']:g} .item()), {lc['check_false']['per_call']:g} with check=False "
            f"({lc['check_false']['item_per_call']:g} .item()); same loss value: {lc['equal_loss']}")
    n = res['notes']
    c.print("Callbacks of ours (operators per step): " + ', '.join(f"{k} {v:g}" for k, v in o['callbacks'].items()))
    c.print(f"Per step, bound vs ours: .item() {n['item_per_step']['bound']:g} vs {n['item_per_step']['ours']:g}, is_nonzero "
            f"{n['is_nonzero_per_step']['bound']:g} vs {n['is_nonzero_per_step']['ours']:g}, aten::to {n['to_per_step']['bound']:g} vs "
            f"{n['to_per_step']['ours']:g}, alias {n['alias_per_step']['bound']:g} vs {n['alias_per_step']['ours']:g}; zero_grad "
            f"{n['zero_grad']['bound']:g} vs {n['zero_grad']['ours']:g}; {n['gradient_clipping']}; schedule {n['schedule']}")
    ip = res['checks']['immediate_parent_rule']
    c.print(f"The stricter rule (immediate parent not aten::) counts: bound {ip['bound']:.1f}, ours {ip['ours']:.1f} per step")


def extra_by_op(b:dict, o:dict) -> dict:
    "Per operator: bound, ours, extra, and the ranges of ours where the extra ones run (ours' count there minus the bound's same-named range)."
    fo, fb = fine_with_ops(o), fine_with_ops(b)
    out = {}
    for op in set(b['per_op']) | set(o['per_op']):
        bb, oo = b['per_op'].get(op, 0), o['per_op'].get(op, 0)
        where = {}
        for p in set(fo) | set(fb):
            d = round(fo.get(p, {}).get(op, 0) - fb.get(p, {}).get(op, 0), 3)
            if abs(d) > 1e-9: where[p] = d
        out[op] = dict(bound=bb, ours=oo, extra=round(oo - bb, 3), where=dict(sorted(where.items(), key=lambda kv: -abs(kv[1]))))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]['extra']))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bs', type=int, default=50, help="batch size of both paths (the 'gift' batch rule would give 100 for 1000 images)")
    p.add_argument('--ipc', type=int, default=10)
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--skip-what-if', action='store_true', help="skip the optimizer and loss what-ifs (two bound epochs: about a third of the time)")
    p.add_argument('--out', default=str(BENCH / 'results'))
    a = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    torch.manual_seed(0)
    t0 = time.perf_counter()
    dset, test, teacher = make_case(a.ipc, a.classes)
    label = f"ConvNet-3 student and teacher, {a.classes} classes x IPC {a.ipc} = {len(dset)} images 3x32x32, batch {a.bs}, fp32, channels-last, CPU"

    check = bench_bound_check(dset, teacher)  # (before any range is patched in)
    teacher._opc_teacher = True  # (the wrapped forward names the teacher's range by this flag; copies keep it)
    with patched(range_targets(teacher)):
        b_ops, b_steps, b_ev, b_params = bound_counts(dset, teacher, a.bs)
        o_ops, o_steps, o_ev, fit, o_sec, cbs, proto = ours_counts(dset, test, teacher, a.bs)
        what_if = {} if a.skip_what_if else optimizer_variants(dset, teacher, a.bs, b_params)
    if not a.skip_what_if: what_if['loss_checks'] = loss_variants(a.bs, a.classes)
    del teacher._opc_teacher
    bound = summarise(b_ops, b_steps)
    ours = summarise(o_ops, o_steps)
    ours['dsa_branches'] = dsa_branches(o_ops, o_ev, o_steps)
    ours['per_step_expected'] = expected_per_step(ours, ours['dsa_branches'])
    ours['profiled_epoch_seconds'] = round(o_sec, 2)
    per_cb = collections.Counter()
    for k, v in ours['per_range'].items():
        if k.startswith('cb/'): per_cb[k[3:].split('.')[0]] += v
    ours['callbacks'] = {c: round(per_cb.get(c, 0), 2) for c in cbs}  # every callback of the learner, in order: its operators per step
    notes = dict(
        zero_grad=dict(bound=ops_in(b_ops, b_steps, 'zero_grad'), ours=ops_in(o_ops, o_steps, 'zero_grad'),
                       why="set_to_none=True in both (fastai's OptimWrapper calls torch's zero_grad, set_to_none by default): no operator"),
        gradient_clipping=f"protocol clip={proto.clip!r}: no GradientClip callback",
        optimizer=f"torch.optim.AdamW in both (ours through fastai's OptimWrapper, opt={proto.opt!r}); on the CPU torch defaults to the "
                  f"per-parameter loop (foreach only for CUDA/XPU tensors): see what_if",
        schedule=f"{proto.schedule!r} stepped per {proto.step}: no operator per batch",
        item_per_step=dict(bound=sum(o == 'aten::item' for o, _ in b_ops) / b_steps, ours=sum(o == 'aten::item' for o, _ in o_ops) / o_steps),
        is_nonzero_per_step=dict(bound=sum(o == 'aten::is_nonzero' for o, _ in b_ops) / b_steps,
                                 ours=sum(o == 'aten::is_nonzero' for o, _ in o_ops) / o_steps),
        to_per_step=dict(bound=sum(o == 'aten::to' for o, _ in b_ops) / b_steps, ours=sum(o == 'aten::to' for o, _ in o_ops) / o_steps),
        alias_per_step=dict(bound=sum(o == 'aten::alias' for o, _ in b_ops) / b_steps, ours=sum(o == 'aten::alias' for o, _ in o_ops) / o_steps),
        metrics="hard_accuracy accumulates in validation only (train_metrics off): no operator in training")
    bound['per_phase'], ours['per_phase'] = coarse(bound), coarse(ours)
    res_sources = sources(bound, ours)
    res = dict(
        what="top-level ATen operators per training step: aten:: operators without an aten:: ancestor in torch.profiler's event "
             "tree (FunctionEvent.cpu_parent chain); per step = the window's count / its steps",
        case=dict(label=label, student='convnet3', teacher='convnet3 (create_student + as_teacher, random init)', classes=a.classes,
                  ipc=a.ipc, n=len(dset), image='3x32x32 uint8', bs=a.bs, precision='fp32', channels_last=True, device='cpu',
                  protocol="gift (epochs=2, bs, eval_every=0: tested after the last epoch only)"),
        versions=dict(torch=torch.__version__, fastai=__import__('fastai').__version__, python=platform.python_version()),
        threads=torch.get_num_threads(),
        bound=bound, ours=ours,
        ratio=round(ours['per_step'] / bound['per_step'], 3), extra_per_step=round(ours['per_step'] - bound['per_step'], 2),
        extra_by_source=res_sources, extra_by_op=extra_by_op(bound, ours),
        checks=dict(bench_bound_runner_per_step=round(check, 2),
                    immediate_parent_rule=dict(bound=round(top_level_immediate(b_ev) / b_steps, 2),
                                               ours=round(top_level_immediate(o_ev) / o_steps, 2)),
                    fit_final_acc=fit['final_acc']),
        what_if=what_if, notes=notes,
        seconds=None)
    res['seconds'] = round(time.perf_counter() - t0, 1)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    f = out / 'op-count.json'
    f.write_text(json.dumps(res, indent=1) + '\n')
    table(res)
    print(f"wrote {f} ({res['seconds']} s)")
    return res


if __name__ == '__main__': main()
