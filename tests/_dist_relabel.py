"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (CPU, gloo): TeacherRelabel inside fastai's
distributed context. Each rank writes what it saw to OUT/rank{r}.json; the test compares the ranks."""
import json, os, sys
from pathlib import Path
import torch, torch.nn as nn
import fastai.distributed as fdist
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from gift_fastai.data import DistilledSet, distilled_dls
from gift_fastai.learner import distilled_learner
from gift_fastai.models import create_student


def _broadcast_cpu(self, t, rank):  # fastai's DistributedDL._broadcast calls .cuda(): gloo on the CPU needs CPU tensors
    t = torch.LongTensor(t); torch.distributed.broadcast(t, rank); return t.tolist()
fdist.DistributedDL._broadcast = _broadcast_cpu


class Probe(Callback):
    order = 30  # after TeacherRelabel (its after_pred has put the teacher's logits in yb)
    def before_fit(self): self.seen, self.model_type = [], type(self.learn.model).__name__  # wrapped by now
    def after_pred(self):
        if self.training: self.seen.append((self.xb[0].detach().clone(), self.yb[0].clone(), self.yb[1].clone()))


def main(out):
    out = Path(out)
    set_seed(0)
    n, C, H = 40, 4, 16
    labels = torch.arange(C).repeat_interleave(n // C)
    imgs = (torch.rand(n, 3, H, H) * 200).to(torch.uint8)
    imgs[:, :, 0, 0] = torch.arange(n, dtype=torch.uint8)[:, None]  # the image's id in its corner pixel
    dset = DistilledSet(imgs, labels, classes=list('abcd'), mean=(0., 0., 0.), std=(1., 1., 1.))
    teacher = create_student('convnet3', C, img_size=H, width=8).eval()
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    # (a validation set: fastai's DistributedDL divides by zero on the empty loader distilled_dls makes without one)
    dls = distilled_dls(dset, valid=dset, bs=10, aug=None, device='cpu', seed=0)
    probe = Probe()
    learn = distilled_learner(dls, 'convnet3', teacher=teacher, loss='gift', arch_kwargs=dict(width=8), cbs=probe)
    with learn.distrib_ctx(sync_bn=False, cpu=True), learn.no_bar(), learn.no_logging():
        learn.fit(2)
    rank = int(os.environ.get('RANK', 0))
    teacher.eval()
    res = dict(rank=rank, world=int(os.environ.get('WORLD_SIZE', 1)), wrapped=probe.model_type,
               batches=len(probe.seen),
               ids_epoch1=sorted(int(round(float(x[i, 0, 0, 0]) * 255)) for x, _, _ in probe.seen[:len(probe.seen) // 2]
                                 for i in range(len(x))),
               max_soft_err=max(float((t - teacher(x)).abs().max()) for x, _, t in probe.seen),
               labels_ok=all(bool((y == labels[(x[:, 0, 0, 0] * 255).round().long()]).all()) for x, y, _ in probe.seen),
               teacher_unchanged=all(torch.equal(v, state[k]) for k, v in teacher.state_dict().items()),
               teacher_device=str(next(teacher.parameters()).device),
               student_sum=float(sum(p.double().sum() for p in learn.model.parameters())))
    (out / f"rank{rank}.json").write_text(json.dumps(res))


if __name__ == '__main__': main(sys.argv[1])
