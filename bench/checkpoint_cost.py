"""What a checkpoint costs: seconds to take and write one (`fit_state` + `save_checkpoint`), its size, and the share of
a fit it takes at the commands' default interval (10 epochs). Run by hand: python bench/checkpoint_cost.py [--out DIR]."""
import argparse, json, tempfile, time
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.torch_core import set_seed
from gift_fastai.checkpoint import fit_state, save_checkpoint
from gift_fastai.assets import load_default
from gift_fastai.data import distilled_dls
from gift_fastai.learner import distilled_learner


class Measure(Callback):
    "After the first epoch: time one epoch, then 5 checkpoints of this fit, and stop."
    order = 99
    def before_epoch(self): self.t0 = time.perf_counter()
    def after_epoch(self):
        self.epoch_s = time.perf_counter() - self.t0
        ts = []
        for i in range(5):
            t0 = time.perf_counter(); save_checkpoint(self.path, fit_state(self.learn, self.epoch + 1)); ts.append(time.perf_counter() - t0)
        self.save_s, self.mib = sorted(ts)[2], self.path.stat().st_size / 2**20
        raise CancelFitException()


def main(out=None):
    dset, teacher, test = load_default()
    rows = []
    for arch in ('convnet3', 'resnet18_modified'):
        set_seed(0)
        dls = distilled_dls(dset, device='cpu', seed=0, mean=teacher.teacher_meta['mean'], std=teacher.teacher_meta['std'])
        m = Measure(); m.path = Path(tempfile.mkdtemp()) / 'c.pth'
        learn = distilled_learner(dls, arch, teacher=teacher, cbs=m)
        with learn.no_bar(), learn.no_logging(): learn.fit(2)
        rows.append(dict(arch=arch, epoch_s=round(m.epoch_s, 3), checkpoint_s=round(m.save_s, 4), MiB=round(m.mib, 2),
                         share_at_every_10=round(m.save_s / (10 * m.epoch_s), 4)))
        print(rows[-1])
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / 'checkpoint-cost-cpu.json').write_text(json.dumps(dict(rows=rows, torch=torch.__version__, threads=torch.get_num_threads()), indent=1))


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__); p.add_argument('--out', default=None)
    main(p.parse_args().out)
