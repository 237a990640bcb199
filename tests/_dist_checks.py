"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (CPU, gloo): distilled_learner inside fastai's
`learn.distrib_ctx()`, with no patch here (the library mends fastai). Each rank writes what it saw to OUT/rank{r}.json."""
import json, os, sys
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.torch_core import set_seed, distrib_barrier
from gift_fastai.checkpoint import Checkpoint
from gift_fastai.core import InputError
from gift_fastai.data import DistilledSet, distilled_dls
from gift_fastai.learner import distilled_learner
from gift_fastai.models import create_student

C, H = 4, 16


def toy(n, seed):
    "n images whose class is a bright band, and whose id is written in the corner pixel (read back from any batch)."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = (torch.rand(n, 3, H, H, generator=g) * 120).to(torch.uint8)
    for i in range(n): x[i, :, 4 * int(y[i]):4 * int(y[i]) + 3, 2:] = 230
    x[:, :, 0, 0] = torch.arange(n, dtype=torch.uint8)[:, None]
    return DistilledSet(x, y, classes=list('abcd'), mean=(0., 0., 0.), std=(1., 1., 1.))

def ids(x): return (x[:, 0, 0, 0] * 255).round().long()


class Probe(Callback):
    order = 30  # after TeacherRelabel (its after_pred has put the teacher's logits in yb)
    def before_fit(self): self.seen, self.model_type = [], type(self.learn.model).__name__  # wrapped by now
    def after_pred(self):
        if self.training: self.seen.append((self.epoch, self.xb[0].detach().clone(), self.yb[0].clone(), self.yb[1].clone()))


def main(out):
    out, rank = Path(out), int(os.environ.get('RANK', 0))
    res = dict(rank=rank, world=int(os.environ.get('WORLD_SIZE', 1)))
    set_seed(0)
    train, valid = toy(43, 0), toy(101, 1)
    teacher = create_student('convnet3', C, img_size=H, width=8).eval()
    state = {k: v.clone() for k, v in teacher.state_dict().items()}

    # 1. relabel, sharding and exact metrics: 43 training images (not even), 101 validation images (neither)
    dls = distilled_dls(train, valid=valid, bs=10, valid_bs=16, aug=None, device='cpu', seed=0)  # (ids survive)
    probe = Probe()
    learn = distilled_learner(dls, 'convnet3', teacher=teacher, loss='gift', arch_kwargs=dict(width=8), cbs=probe)
    logger = learn.logger
    with learn.distrib_ctx(sync_bn=False, cpu=True), learn.no_bar(): learn.fit(3)
    teacher.eval(); model = learn.model.eval()
    with torch.no_grad():
        xv = (valid.images.float() / 255); z = model(xv)
        exact_acc = float((z.argmax(1) == valid.labels).float().mean())
    res.update(wrapped=probe.model_type, unwrapped=type(learn.model).__name__, logger_back=learn.logger is logger,
               batches=[sum(e == k for e, *_ in probe.seen) for k in range(3)],
               batch_sizes=[len(x) for e, x, *_ in probe.seen if e == 0],
               ids=[sorted(int(i) for e, x, *_ in probe.seen if e == k for i in ids(x)) for k in range(3)],
               max_soft_err=max(float((s - teacher(x)).abs().max().detach()) for _, x, _, s in probe.seen),
               labels_ok=all(bool((y == train.labels[ids(x)]).all()) for _, x, y, _ in probe.seen),
               teacher_unchanged=all(torch.equal(v, state[k]) for k, v in teacher.state_dict().items()),
               teacher_device=str(next(teacher.parameters()).device),
               reported_acc=float(learn.recorder.values[-1][-1]), exact_acc=exact_acc,
               weights=[float(p.double().sum()) for p in learn.model.parameters()])
    # the validation loss the recorder reports, against fastai's own in one process (after the context: no sharding)
    reported = float(learn.recorder.values[-1][1])
    loss1, acc1 = learn.validate()
    res.update(reported_loss=reported, exact_loss=float(loss1), single_acc=float(acc1))

    # 2. no validation set: fastai's padding divided by zero on the empty loader
    learn = distilled_learner(distilled_dls(train, bs=10, device='cpu', seed=0), 'convnet3', teacher=teacher, arch_kwargs=dict(width=8))
    with learn.distrib_ctx(sync_bn=False, cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(1)
    res['no_valid_ok'] = True

    # 3. sync_bn=True with a BatchNorm student on the CPU: refused with the fix, and the student is left as it was
    learn = distilled_learner(dls, 'convnet3', teacher=teacher, arch_kwargs=dict(width=8))
    try:
        with learn.distrib_ctx(cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(1)
        res['sync_bn_error'] = None
    except InputError as e: res['sync_bn_error'] = str(e)
    res['bn_kept'] = sorted({type(m).__name__ for m in learn.model.modules() if 'Norm' in type(m).__name__})
    with learn.distrib_ctx(sync_bn=False, cpu=True), learn.no_bar(), learn.no_logging(): learn.fit(1)
    res['bn_weights'] = [float(p.double().sum()) for p in learn.model.parameters()]

    # 4. a checkpointed fit killed after 2 of 4 epochs, continued: the weights of the 2-process fit never stopped
    class KillAfter(Callback):
        order = 95  # after Checkpoint wrote epoch 2
        def after_epoch(self):
            if self.epoch + 1 == 2: raise CancelFitException()
    ck = out / 'ck' / 'fit.pth'
    def fit4(*cbs):
        set_seed(1)
        d = distilled_dls(train, valid=valid, bs=10, aug='gift', device='cpu', seed=1 + 1_000_003 * rank)  # DSA: each rank its own
        l = distilled_learner(d, 'convnet3', teacher=teacher, arch_kwargs=dict(width=8), cbs=list(cbs))
        with l.distrib_ctx(sync_bn=False, cpu=True), l.no_bar(), l.no_logging(): l.fit(4)
        return [p.detach().clone() for p in l.model.parameters()]
    ref = fit4()
    fit4(Checkpoint(ck, every=1), KillAfter())
    distrib_barrier()
    res['ck_files'] = sorted(p.name for p in ck.parent.iterdir())
    again = fit4(Checkpoint(ck, every=1))
    res['resumed_equal'] = all(torch.equal(a, b) for a, b in zip(ref, again))
    # the same, but rank 1's own file lost: it continues from rank 0's generators, and the run is another one
    ck2 = out / 'ck2' / 'fit.pth'
    fit4(Checkpoint(ck2, every=1), KillAfter())
    distrib_barrier()
    if rank == 0: (out / 'ck2' / 'fit.rank1.pth').unlink()
    distrib_barrier()
    other = fit4(Checkpoint(ck2, every=1))
    res['without_rank_file_differs'] = not all(torch.equal(a, b) for a, b in zip(ref, other))
    (out / f"rank{rank}.json").write_text(json.dumps(res))


if __name__ == '__main__': main(sys.argv[1])
