"The losses inside real fastai Learners: training, get_preds, per-sample losses, the epoch callback."
import pytest, torch, torch.nn as nn
from fastai.data.core import Datasets
from fastai.learner import Learner
from fastai.torch_core import set_seed
from fastai.callback.core import Callback
import fastai.callback.progress  # noqa: F401  (Learner.no_bar, the progress bar of a real session)
from gift_fastai.losses import get_loss, LossEpoch, loss_registry


def teacher_dls(n=320, d=8, c=4, seed=0, bs=32):
    "A separable problem: a linear teacher labels Gaussian points; batches are (x, y_hard, y_soft)."
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, c, generator=g) * 2
    x = torch.randn(n, d, generator=g)
    t = x @ w
    y = t.argmax(1)
    idx = list(range(n))
    dsets = Datasets(idx, tfms=[[x.__getitem__], [y.__getitem__], [t.__getitem__]], n_inp=1,
                     splits=[idx[:256], idx[256:]])
    return dsets.dataloaders(bs=bs, num_workers=0, seed=seed)


def fit(loss, epochs=10, lr=0.05, cbs=(), seed=0):
    set_seed(seed)  # torch, numpy and python's random (fastai's shuffling draws from it)
    dls = teacher_dls()
    learn = Learner(dls, nn.Linear(8, 4), loss_func=loss, cbs=list(cbs), lr=lr)
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs)
    return learn


@pytest.mark.parametrize('name', ['gift', 'kl', 'dkd', 'ce'])
def test_learner_learns_and_get_preds(name):
    learn = fit(get_loss(name), cbs=[LossEpoch()])
    preds, targs, decoded, losses = learn.get_preds(with_decoded=True, with_loss=True)
    y_hard, y_soft = targs
    assert preds.shape == (64, 4)
    torch.testing.assert_close(preds.sum(1), torch.ones(64))         # activation: softmax
    assert torch.equal(decoded, preds.argmax(1))                      # decodes: argmax
    acc = (decoded == y_hard).float().mean().item()
    assert acc > 0.9, f"{name}: validation accuracy {acc:.3f} on a separable problem"
    assert losses.shape == (64,)                                      # reduction='none' via fastai
    assert learn.loss_func.reduction == 'mean'                         # restored afterwards
    expected = learn.loss_func(learn.model(learn.dls.valid.dataset[0][0][None]), y_hard[:1], y_soft[:1])
    torch.testing.assert_close(losses[0], expected.detach(), rtol=1e-5, atol=1e-6)


def test_validation_loss_is_the_mean_of_per_sample_losses():
    learn = fit(get_loss('gift'), epochs=2)
    val_loss = learn.validate()[0]
    *_, losses = learn.get_preds(with_loss=True)
    assert abs(val_loss - losses.mean().item()) < 1e-5


class _RecordEpoch(Callback):
    order = 10
    def before_fit(self): self.seen = []
    def after_epoch(self): self.seen.append((self.learn.loss_func.epoch, self.learn.loss_func.ramp))


def test_loss_epoch_drives_dkd_warmup():
    rec = _RecordEpoch()
    fit(get_loss('dkd', warmup=2), epochs=3, cbs=[LossEpoch(), rec])
    assert rec.seen == [(1, 0.5), (2, 1.0), (3, 1.0)]


def test_loss_epoch_reaches_terms_of_a_weighted_sum():
    l = get_loss('kl_ce')
    l.set_epoch(7)
    assert [t.epoch for t in l.terms] == [7, 7]


def test_gift_student_logits_point_where_the_teachers_do():
    "GIFT uses the teacher's logits: the student's logits point where the teacher's do (mean cosine > 0.9)."
    learn = fit(get_loss('gift'), epochs=8)
    preds, (y, t) = learn.get_preds()
    z = learn.model(torch.stack([learn.dls.valid.dataset[i][0] for i in range(64)])).detach()
    cos = torch.nn.functional.cosine_similarity(z, t).mean().item()
    assert cos > 0.9, cos


def test_every_registry_entry_is_documented():
    for e in loss_registry:
        assert e.summary and e.formula.startswith('$') and e.source, e.name
        assert (e.fn.__doc__ or '').strip() or e.fn.__name__.startswith('_make_'), e.name
