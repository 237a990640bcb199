"Ablation callbacks (Refine, SwapLoss, HardOnly, SoftOnly) on tiny fastai Learners, against golden values computed in numpy."
from functools import partial
import numpy as np, pytest, torch, torch.nn as nn
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.mixup import MixUp
from fastai.learner import Learner
from fastai.torch_core import set_seed
from gift_fastai.callbacks import Refine, SwapLoss, HardOnly, SoftOnly, soft_only, TeacherRelabel
from gift_fastai.core import InputError, InputTypeError, UnknownNameError
from gift_fastai.data import DistilledSet, distilled_dls
from gift_fastai.learner import distilled_learner
from gift_fastai.losses import get_loss, GIFTLoss, LossEpoch, loss_registry

C = 4
close = partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)  # float32 results against float64 golden values


# -- a tiny problem: 4 classes of 1x4x4 images, class k brighter by 48 grey levels

def tiny_set(seed=0, soft=None):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(C).repeat_interleave(8)
    imgs = (torch.rand(32, 1, 4, 4, generator=g) * 64 + labels[:, None, None, None] * 48).to(torch.uint8)
    return DistilledSet(imgs, labels, soft=soft, classes=list('abcd'))


def linear(seed, scale=1.):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, C))
    with torch.no_grad(): m[1].weight.mul_(scale)
    return m


LIN = linear(5, scale=10.)  # a fixed linear teacher with logits of a few units: its logits in numpy are x W^T + b
W, B_ = (p.detach().double().numpy() for p in LIN[1].parameters())


def learner(cbs=(), loss='gift', teacher=LIN, dset=None, lr=1e-2, **kwargs):
    dls = distilled_dls(dset or tiny_set(), valid=tiny_set(1), bs=8, aug=None, device='cpu', seed=0)
    set_seed(0)
    return distilled_learner(dls, linear(1), teacher=teacher, loss=loss, cbs=list(cbs), lr=lr, **kwargs)


def quiet_fit(learn, n, **kwargs):
    with learn.no_bar(), learn.no_logging(): learn.fit(n, **kwargs)
    return learn


class First(Callback):
    "Record the first training batch (input, logits, what the loss receives, MixUp's yb1, the loss), then cancel the fit."
    order = 100
    def after_pred(self):
        mix = next((cb for cb in self.learn.cbs if isinstance(cb, MixUp)), None)
        self.rec = dict(x=self.xb[0], z=self.pred.detach(), y=self.yb[0], t=self.yb[1])
        if mix is not None: self.rec.update(y1=mix.yb1[0], t1=mix.yb1[1])
    def after_loss(self):
        self.rec['loss'] = self.learn.loss
        raise CancelFitException()


def first_batch(learn):
    "The first batch's record as float64 numpy arrays (hard labels as int)."
    first = First()
    quiet_fit(learn, 1, cbs=first)
    out = {k: v.detach().as_subclass(torch.Tensor).double().numpy() for k, v in first.rec.items()}
    for k in ('y', 'y1'):
        if k in out: out[k] = out[k].astype(int)
    return out


# -- golden values, in numpy

def np_teacher(x): return x.reshape(len(x), -1) @ W.T + B_
def unit(v): return v / np.linalg.norm(v, axis=1, keepdims=True)
def norm(v): return np.linalg.norm(v, axis=1, keepdims=True)
def log_softmax(v, T=1.):
    v = v / T - (v / T).max(1, keepdims=True)
    return v - np.log(np.exp(v).sum(1, keepdims=True))
def smooth(y, a=0.1):
    s = np.full((len(y), C), a / (C - 1)); s[np.arange(len(y)), y] = 1 - a
    return s
def refined(t, y, g=0.1, a=0.1): return g * unit(smooth(y, a)) + (1 - g) * unit(t)
def kl(t, z, T=20.):
    lt, lz = log_softmax(t, T), log_softmax(z, T)
    return (np.exp(lt) * (lt - lz)).sum(1).mean()
def cos_loss(z, r): return (1 - (unit(z) * unit(r)).sum(1)).mean()
def ce(z, y): return -log_softmax(z)[np.arange(len(y)), y].mean()


# -- Refine: the target the loss receives

T_FIX = torch.tensor([[2., -1., 0.5, 0.], [0.3, 0.1, -2., 1.], [0., 0., 0., 0.]])
Y_FIX = torch.tensor([1, 3, 0])


def test_refine_target_is_the_refined_label_at_the_teachers_length():
    t, y = T_FIX[:2].double().numpy(), Y_FIX[:2].numpy()
    r = Refine(gamma=0.2, alpha=0.1).target(Y_FIX[:2], T_FIX[:2])
    close(r.numpy(), norm(t) * (0.2 * unit(smooth(y)) + 0.8 * unit(t)))
    # hand-checked first row: |t| = sqrt(5.25); s = (1/30, 0.9, 1/30, 1/30), |s| = sqrt(0.81 + 3/900)
    s0 = np.array([1 / 30, 0.9, 1 / 30, 1 / 30]) / np.sqrt(0.81 + 3 / 900)
    close(r[0].numpy(), 0.2 * np.sqrt(5.25) * s0 + 0.8 * np.array([2., -1., 0.5, 0.]))
    # legacy: t + gamma |t| s_hat; gamma = 0: the teacher's own logits; a zero row stays zero (no NaN)
    close(Refine(gamma=0.5, legacy=True).target(Y_FIX[:2], T_FIX[:2]).numpy(), t + 0.5 * norm(t) * unit(smooth(y)))
    close(Refine(gamma=0.).target(Y_FIX[:2], T_FIX[:2]).numpy(), t)
    assert torch.equal(Refine().target(Y_FIX, T_FIX)[2], torch.zeros(C))


def test_refine_target_for_probabilities_is_a_probability_vector():
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.4, 0.1]])
    ref = Refine(gamma=0.3)
    ref.probs = True  # what before_fit sets for a loss with soft='probs'
    out = ref.target(torch.tensor([2, 0]), torch.tensor(p, dtype=torch.float32)).numpy()
    r = 0.3 * unit(smooth(np.array([2, 0]))) + 0.7 * unit(p)
    close(out, r / r.sum(1, keepdims=True))
    close(out.sum(1), np.ones(2))


def test_refine_only_row_kl_on_the_refined_label():
    "Refine + SwapLoss('kl') on a GIFT learner (or Refine on a KL learner): Table 7 'refine'."
    for learn in (learner([Refine(gamma=0.2), SwapLoss('kl')]), learner([Refine(gamma=0.2)], loss='kl')):
        rec = first_batch(learn)
        t = np_teacher(rec['x'])
        target = norm(t) * refined(t, rec['y'], g=0.2)
        close(rec['t'], target)
        close(rec['loss'], kl(target, rec['z']))
        assert kl(target, rec['z']) > 1e-3 and not np.allclose(kl(t, rec['z']), kl(target, rec['z']), rtol=1e-2)


def test_table7_none_loss_both():
    none = first_batch(learner([SwapLoss('kl')]))
    loss_only = first_batch(learner([SwapLoss('cosine')]))
    both = first_batch(learner())
    refine_cos = first_batch(learner([Refine(), SwapLoss('cosine')]))
    for rec in (none, loss_only, both): close(rec['t'], np_teacher(rec['x']))  # no refinement of the soft slot
    close(none['loss'], kl(np_teacher(none['x']), none['z']))
    close(loss_only['loss'], cos_loss(loss_only['z'], np_teacher(loss_only['x'])))
    golden_both = cos_loss(both['z'], refined(np_teacher(both['x']), both['y']))
    close(both['loss'], golden_both)
    close(refine_cos['loss'], golden_both)  # Refine + cosine is GIFT exactly (the cosine ignores the rescaling)
    assert abs(golden_both - loss_only['loss']) > 1e-3


def test_refine_refines_the_mixed_in_images_with_their_own_labels():
    rec = first_batch(learner([MixUp(), Refine()], loss='kl'))
    t = np_teacher(rec['x'])  # the teacher's logits on the mixed batch, for both slots
    close(rec['t'], norm(t) * refined(t, rec['y']))
    close(rec['t1'], norm(t) * refined(t, rec['y1']))
    assert (rec['y1'] != rec['y']).any()


def test_refine_and_swap_with_probability_soft_labels():
    "Stored probabilities (soft='probs'): Refine hands r / sum(r); a loss swapped in by name reads them as probabilities."
    P = np.array([[0.6, 0.2, 0.1, 0.1], [0.1, 0.5, 0.3, 0.1], [0.2, 0.2, 0.5, 0.1], [0.1, 0.1, 0.2, 0.6]])
    dset = tiny_set(soft=torch.tensor(P, dtype=torch.float32)[torch.arange(C).repeat_interleave(8)])  # soft label of class k: P[k]
    rec = first_batch(learner([Refine(gamma=0.3)], loss='kl', teacher='stored', dset=dset, loss_kwargs=dict(soft='probs')))
    p = P[rec['y']]
    r = 0.3 * unit(smooth(rec['y'])) + 0.7 * unit(p)
    close(rec['t'], r / r.sum(1, keepdims=True))
    close(rec['loss'], kl(np.log(r / r.sum(1, keepdims=True)), rec['z']))
    swap = SwapLoss('softce')
    rec = first_batch(learner([swap], loss='kl', teacher='stored', dset=dset, loss_kwargs=dict(soft='probs')))
    assert swap.new.soft == 'probs'
    close(rec['loss'], -(P[rec['y']] * log_softmax(rec['z'])).sum(1).mean())


# -- HardOnly, SoftOnly

def test_hard_only_is_ce_and_ignores_the_teacher():
    rec = first_batch(learner([HardOnly()]))
    close(rec['loss'], ce(rec['z'], rec['y']))
    close(rec['t'], np_teacher(rec['x']))  # the teacher's logits arrive, the loss ignores them


@pytest.mark.parametrize('loss,golden', [
    ('gift', lambda z, y, t: cos_loss(z, t)),               # no refinement
    ('kl_ce', lambda z, y, t: kl(t, z)),                    # the CE term dropped
    ('kd', lambda z, y, t: 0.9 * 16 * kl(t, z, T=4.)),      # 0.9 T^2 KL(T=4), CE dropped
])
def test_soft_only_drops_the_hard_label_term(loss, golden):
    rec = first_batch(learner([SoftOnly()], loss=loss))
    close(rec['loss'], golden(rec['z'], rec['y'], np_teacher(rec['x'])))


# the weight of each registered loss's hard-label (cross-entropy) term, which soft_only removes; GIFT's hard label is in
# its refined target instead, and 'ce' has nothing but the hard label
HARD_WEIGHT = dict(kl=0, softce=0, mse=0, cosine=0, kl_ce=0.1, mse_ce=0.1, softce_ce=0.1, kd=0.1, dkd=1, nkd=1, wsld=1)


def test_soft_only_of_every_loss():
    "Each registered loss: soft_only drops exactly its hard-label term, in a copy; it refuses 'ce', which has no other."
    assert set(HARD_WEIGHT) | {'gift', 'ce'} == {e.name for e in loss_registry}  # a new loss needs its row
    g = torch.Generator().manual_seed(0)
    z, t, y = torch.randn(6, C, generator=g), 3 * torch.randn(6, C, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])
    zd, td, yd = z.double().numpy(), t.double().numpy(), y.numpy()
    for e in loss_registry:
        loss = get_loss(e.name)
        whole = loss(z, y, t).item()
        if e.name == 'ce':
            with pytest.raises(InputError, match="loss 'ce' has no soft-label term"): soft_only(loss)
            continue
        soft = soft_only(loss)
        assert soft is not loss and soft.name == f'{e.name} (soft only)', e.name
        if e.name == 'gift': close(soft(z, y, t).item(), cos_loss(zd, td))  # the cosine to the teacher, unrefined
        else: close(whole - soft(z, y, t).item(), HARD_WEIGHT[e.name] * ce(zd, yd), err_msg=e.name)
        assert loss(z, y, t).item() == whole, e.name  # the original is untouched
    dkd = get_loss('dkd')
    soft = soft_only(dkd)
    assert soft.ce_weight == 0 and dkd.ce_weight == 1 and soft is not dkd  # a copy; the original is untouched
    gift = get_loss('gift')
    assert soft_only(gift).refine is False and gift.refine is True
    assert soft_only(get_loss('kl_ce')).name == 'kl_ce (soft only)'
    with pytest.raises(InputError, match="loss 'ce' has no soft-label term"): soft_only(get_loss('ce'))
    with pytest.raises(InputTypeError, match='got CrossEntropyLoss'): soft_only(nn.CrossEntropyLoss())
    learn = learner([SoftOnly()], loss='ce')
    with pytest.raises(InputError, match='has no soft-label term'): quiet_fit(learn, 1)
    assert learn.loss_func.name == 'ce'


# -- SwapLoss: restored after fit, also after a cancelled fit and an exception; DKD gets its epoch

class Boom(Callback):
    def after_batch(self): raise RuntimeError('boom')


class Cancel(Callback):
    def after_batch(self): raise CancelFitException()


def test_swap_loss_is_restored():
    learn = learner([SwapLoss('cosine')])
    own = learn.loss_func
    seen = []
    class Look(Callback):
        def after_loss(self): seen.append(self.learn.loss_func)
    quiet_fit(learn, 1, cbs=Look())
    assert learn.loss_func is own and seen and all(type(l).__name__ == 'CosineLoss' for l in seen)
    quiet_fit(learn, 1, cbs=Cancel())  # cancelled fit: fastai runs after_fit
    assert learn.loss_func is own
    # an exception: fastai runs no event; SwapLoss given to fit is removed in fit's `finally`, which restores
    learn = learner()
    own = learn.loss_func
    with pytest.raises(RuntimeError, match='boom'): quiet_fit(learn, 1, cbs=[SwapLoss('kl'), Boom()])
    assert learn.loss_func is own
    # attached to the learner: the next fit keeps the learner's own loss aside and restores it; so does removing it
    swap = SwapLoss('kl')
    learn = learner([swap])
    own = learn.loss_func
    with pytest.raises(RuntimeError, match='boom'): quiet_fit(learn, 1, cbs=Boom())
    assert learn.loss_func is swap.new
    quiet_fit(learn, 1)
    assert learn.loss_func is own
    with pytest.raises(RuntimeError, match='boom'): quiet_fit(learn, 1, cbs=Boom())
    learn.remove_cb(swap)
    assert learn.loss_func is own


def test_swapped_in_dkd_gets_its_epoch():
    ramps = []
    class Ramp(Callback):
        order = 0  # after LossEpoch (-5)
        def before_train(self): ramps.append((self.learn.loss_func.name, self.learn.loss_func.epoch, self.learn.loss_func.ramp))
    learn = learner([SwapLoss('dkd', warmup=4), Ramp()])
    assert any(isinstance(cb, LossEpoch) for cb in learn.cbs)
    quiet_fit(learn, 3)
    assert ramps == [('dkd', 1, 0.25), ('dkd', 2, 0.5), ('dkd', 3, 0.75)]
    assert isinstance(learn.loss_func, GIFTLoss) and learn.loss_func.epoch == 1  # the learner's own loss got no epoch


# -- bad inputs

def test_bad_inputs():
    for g in (1.5, -0.1, float('nan'), '0.1', True):
        with pytest.raises(InputError, match=r'gamma must be in \[0, 1\]'): Refine(gamma=g)
    Refine(gamma=2., legacy=True)  # legacy: any gamma >= 0
    with pytest.raises(InputError, match=r'alpha must be in \[0, 1\)'): Refine(alpha=1.)
    with pytest.raises(UnknownNameError, match="unknown loss 'kll'. Did you mean 'kl'?"): SwapLoss('kll')
    with pytest.raises(InputTypeError, match="takes no argument 'tau'"): SwapLoss('kl', tau=3)

    def fails(learn, match):
        with pytest.raises(InputError, match=match): quiet_fit(learn, 1)
        return learn
    # Refine without a teacher: no TeacherRelabel at all, or 'stored' when the set stores no soft label
    plain = Learner(distilled_dls(tiny_set(), bs=8, aug=None, device='cpu', seed=0), linear(1), loss_func=get_loss('kl'),
                    cbs=[Refine()])
    fails(plain, 'this learner has no TeacherRelabel: build it with distilled_learner')
    fails(learner([Refine()], loss='kl', teacher=None), r"there is no teacher \(TeacherRelabel\('stored'\)\) and the set stores none")
    # Refine with a loss that ignores soft labels, or refines already; with SoftOnly; two SwapLoss
    fails(learner([Refine(), HardOnly()]), "the loss 'ce' trains on the hard label only")
    learn = fails(learner([Refine()]), 'would refine it twice')
    assert learn.loss_func.refine is True
    fails(learner([Refine(), SoftOnly()]), 'attach only one of them')
    fails(learner([SwapLoss('kl'), HardOnly()]), 'both replace the loss')
    # TeacherRelabel's own check: batches without soft labels
    hard = Learner(distilled_dls(tiny_set(), bs=8, aug=None, device='cpu', seed=0), linear(1), loss_func=get_loss('kl'),
                   cbs=[TeacherRelabel(LIN), Refine()])
    class DropSoft(Callback):  # batches (x, y_hard) only
        order = -20
        def before_batch(self): self.learn.yb = self.yb[:1]
    fails(hard.add_cb(DropSoft()), r'TeacherRelabel needs batches \(x, y_hard, y_soft\)')


# -- end to end: each callback attached, a tiny fit learns

@pytest.fixture(scope='module')
def teacher():
    "A linear teacher trained with CE on the tiny set: accurate."
    m, ds = linear(3), tiny_set()
    xs = (ds.images.float() / 255 - ds.stats[0][0]) / ds.stats[1][0]
    opt = torch.optim.Adam(m.parameters(), 5e-2)
    for _ in range(100):
        opt.zero_grad(); nn.functional.cross_entropy(m(xs), ds.labels).backward(); opt.step()
    assert (m(xs).argmax(1) == ds.labels).float().mean() == 1
    return m.eval()


@pytest.mark.parametrize('name,cbs', [
    ('refine', lambda: [Refine(), SwapLoss('kl')]), ('loss', lambda: [SwapLoss('cosine')]), ('both', lambda: []),
    ('hard only', lambda: [HardOnly()]), ('soft only', lambda: [SoftOnly()]), ('dkd', lambda: [SwapLoss('dkd', warmup=5)]),
    ('refine + mixup', lambda: [Refine(), SwapLoss('kl'), MixUp()]),
])
def test_each_ablation_trains(teacher, name, cbs):
    learn = quiet_fit(learner(cbs(), teacher=teacher, lr=5e-2), 40)
    acc = float(learn.validate()[1])
    assert acc > 0.6, (name, acc)  # chance: 0.25
    assert isinstance(learn.loss_func, GIFTLoss)
