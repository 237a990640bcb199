"Training core on real fastai Learners: class-count and shape checks, MixUp/CutMix, autocast, fastai's tools, end to end."
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest, torch
from fastai.callback.core import Callback
from fastai.callback.mixup import MixUp, CutMix, MixHandler
from fastai.learner import Learner, load_learner
from fastai.torch_core import set_seed
from gift_fastai.callbacks import TeacherRelabel, output_width
from gift_fastai.core import InputError
from gift_fastai.data import DistilledSet, distilled_dls
from gift_fastai.learner import distilled_learner
from gift_fastai.losses import get_loss
from gift_fastai.models import create_student

C, H = 4, 16


def blobs(n_per, seed=0, ch=3):
    "A separable set: class k is a bright square in its own quarter (and channel) of a noisy 16-px image."
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(C).repeat_interleave(n_per)
    x = torch.rand(len(labels), ch, H, H, generator=g) * 60
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c, 2); x[i, c % ch, r * 8:(r + 1) * 8, q * 8:(q + 1) * 8] += 180
    return DistilledSet(x.clamp(0, 255).to(torch.uint8), labels, classes=[f'k{i}' for i in range(C)])


def quiet_fit(learn, n, *args, **kwargs):
    with learn.no_bar(), learn.no_logging(): learn.fit(n, *args, **kwargs)
    return learn


def small_student(n_out=C, in_ch=3, seed=0):
    set_seed(seed)
    return create_student('convnet3', n_out=n_out, in_ch=in_ch, img_size=H, width=16)


@pytest.fixture(scope='module')
def data():
    return blobs(10), blobs(25, seed=1)


@pytest.fixture(scope='module')
def teacher():
    "A ConvNet-3 (with BatchNorm) trained with cross-entropy on 160 real images: accurate on the task."
    set_seed(0)
    big, test = blobs(40, seed=2), blobs(25, seed=1)
    learn = distilled_learner(distilled_dls(big, valid=test, aug=None, device='cpu', seed=0), 'convnet3', loss='ce',
                              arch_kwargs=dict(width=16))
    quiet_fit(learn, 6)
    assert learn.validate()[1] > 0.95
    return learn.model.eval()


def state_of(m): return {k: v.clone() for k, v in m.state_dict().items()}


def assert_same_state(m, state):
    for k, v in m.state_dict().items(): assert torch.equal(v, state[k]), k


# -- class counts and shapes, checked before anything trains

def test_teacher_with_more_classes_than_the_set(data):
    train, test = data
    dls = distilled_dls(train, valid=test, aug=None, device='cpu', seed=0)
    t5 = small_student(n_out=5)
    with pytest.raises(InputError, match=r'the set has 4 classes \(dls\.c\) but the teacher predicts 5'):
        distilled_learner(dls, 'convnet3', teacher=t5, arch_kwargs=dict(width=16))
    # the callback alone (a plain Learner) refuses it at before_fit, before the first batch
    class Count(Callback):
        n = 0
        def before_batch(self): self.n += 1
    count = Count()
    learn = Learner(dls, small_student(), loss_func=get_loss('gift'), cbs=[TeacherRelabel(t5), count])
    with pytest.raises(InputError, match='the teacher predicts 5'): quiet_fit(learn, 1)
    assert count.n == 0


def test_student_module_with_more_classes_than_the_set(data, teacher):
    dls = distilled_dls(data[0], aug=None, device='cpu')
    with pytest.raises(InputError, match=r'the set has 4 classes \(dls\.c\) but the student predicts 5, the teacher predicts 4'):
        distilled_learner(dls, small_student(n_out=5), teacher=teacher)
    assert distilled_learner(dls, small_student(), teacher=teacher).model is not None  # the right widths pass


def test_image_size_the_student_cannot_take(data):
    dls = distilled_dls(data[0], aug=None, device='cpu')
    with pytest.raises(InputError, match=r'ConvNet-6 needs img_size >= 64 .* got 16: at 16 px use depth <= 4'):
        distilled_learner(dls, 'convnet6')
    big = create_student('convnet3', n_out=C, img_size=32, width=16)  # a module built for 32 px
    with pytest.raises(InputError, match=r"the student cannot take the data's images: the data's images are 3x16x16 "
                                         r"\(CxHxW\), the student was built for 3x32x32 images"):
        distilled_learner(dls, big)


def test_set_with_an_empty_class(data):
    train = data[0]
    no_class_3 = DistilledSet(train.images[train.labels < 3], train.labels[train.labels < 3], classes=train.classes)
    with pytest.raises(InputError, match=r"1 class\(es\) have no image: 3 \('k3'\)"):
        distilled_dls(no_class_3, aug=None, device='cpu')


def test_stored_soft_labels_of_the_wrong_width(data):
    train = data[0]
    with pytest.raises(InputError, match=r'soft labels have shape \(40, 5\) but the set needs \(40, 4\)'):
        DistilledSet(train.images, train.labels, soft=torch.randn(len(train), C + 1), classes=train.classes)


def test_teacher_with_the_wrong_input_channels(data):
    dls = distilled_dls(data[0], aug=None, device='cpu')
    grey = small_student(in_ch=1)
    with pytest.raises(InputError, match=r"the teacher cannot take the data's images: the data's images are 3x16x16 "
                                         r"\(CxHxW\), the teacher was built for 1x16x16 images"):
        distilled_learner(dls, 'convnet3', teacher=grey, arch_kwargs=dict(width=16))


def test_width_probe_draws_no_random_number_and_keeps_batchnorm(data, teacher):
    m = small_student().train()
    state, rng = state_of(m), torch.get_rng_state()
    assert output_width(m, (3, H, H)) == C
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(mod.training for mod in m.modules())  # train mode given back
    assert_same_state(m, state)                         # BatchNorm running stats untouched
    # so a seeded fit gives the same student with or without the checks
    def run(check):
        set_seed(0)
        dls = distilled_dls(data[0], aug=None, device='cpu', seed=0, bs=10)
        learn = Learner(dls, small_student(), loss_func=get_loss('gift'), cbs=[TeacherRelabel(teacher, check=check)])
        return quiet_fit(learn, 1).model.state_dict()
    a, b = run(True), run(False)
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- end to end

def test_gift_with_a_teacher_learns_and_leaves_the_teacher_unchanged(data, teacher):
    train, test = data
    state = state_of(teacher)
    set_seed(0)
    dls = distilled_dls(train, valid=test, aug=None, device='cpu', seed=0)
    learn = distilled_learner(dls, 'convnet3', teacher=teacher, loss='gift', arch_kwargs=dict(width=16))
    quiet_fit(learn, 15)
    acc = learn.validate()[1]
    assert acc > 0.9, f"validation accuracy {acc:.3f} on a separable problem"
    assert_same_state(teacher, state)  # weights and BatchNorm running stats
    assert not teacher.training and all(p.requires_grad for p in teacher.parameters())


# -- fastai's MixUp and CutMix

class MixProbe(Callback):
    "Records, as the loss will get them, the batch, the targets, the mixed-in targets, lambda, the prediction and the loss."
    order = 30
    def before_fit(self): self.seen = []
    def after_loss(self):
        if not self.training: return
        mix = next(cb for cb in self.learn.cbs if isinstance(cb, MixHandler))
        self.seen.append(dict(xb=self.xb[0].detach().clone(), yb=[o.clone() for o in self.yb], yb1=[o.clone() for o in mix.yb1],
                              lam=mix.lam.clone(), pred=self.pred.detach().clone(), loss=self.loss.detach().clone()))


@pytest.mark.parametrize('mix', [MixUp, CutMix])
@pytest.mark.parametrize('loss', ['kl', 'gift'])
def test_mixup_cutmix_relabel_the_mixed_batch(data, teacher, mix, loss):
    set_seed(0)
    dls = distilled_dls(data[0], aug=None, device='cpu', seed=0, bs=10)
    probe = MixProbe()
    learn = distilled_learner(dls, small_student(), teacher=teacher, loss=loss, cbs=[mix(), probe])
    quiet_fit(learn, 2)
    assert len(probe.seen) == 8
    lf = get_loss(loss, reduction='none')
    for s in probe.seen:
        (y, t), (y1, t1) = s['yb'], s['yb1']
        expected_t = teacher(s['xb'])
        torch.testing.assert_close(t, expected_t)   # the teacher labels the mixed images...
        torch.testing.assert_close(t1, expected_t)  # ... and that label is the mixed-in images' soft label too
        assert sorted(y1.tolist()) == sorted(y.tolist())  # their hard labels: a shuffle of the batch's
        expected = torch.lerp(lf(s['pred'], y1, t), lf(s['pred'], y, t), s['lam']).mean()
        torch.testing.assert_close(s['loss'], expected)
        if loss == 'kl':  # no hard-label term: the mixed loss is the loss on the teacher's label of the mixed batch
            torch.testing.assert_close(s['loss'], get_loss('kl')(s['pred'], y, t))


def test_cutmix_with_stored_soft_labels_moves_them_with_the_images(data):
    train = data[0]
    stored = DistilledSet(train.images, train.labels, soft=torch.randn(len(train), C), classes=train.classes)
    set_seed(0)
    probe = MixProbe()
    learn = distilled_learner(distilled_dls(stored, aug=None, device='cpu', seed=0, bs=10), small_student(),
                              teacher='stored', cbs=[CutMix(), probe])
    quiet_fit(learn, 1)
    pairs = lambda y, t: sorted(zip(y.tolist(), t.tolist()))
    for s in probe.seen:
        assert pairs(*s['yb1']) == pairs(*s['yb'])  # each mixed-in image keeps its own (hard, stored soft) labels
        rows = {tuple(r) for r in stored.soft.tolist()}
        assert all(tuple(r) in rows for r in s['yb'][1].tolist())
    assert any(not torch.equal(s['yb1'][1], s['yb'][1]) for s in probe.seen)


# -- mixed precision

class SoftLabelDtype(Callback):
    order = 30
    in_batch = False
    def before_fit(self): self.dtypes = set()
    def before_batch(self): self.in_batch = self.training
    def after_pred(self):
        if self.training: self.dtypes.add(self.yb[1].dtype)
    def after_loss(self): self.in_batch = False


def _autocast_fit(learn, teacher):
    "The dtypes of the teacher's outputs and of the soft labels on the training batches of one epoch."
    out_dtypes, probe = set(), SoftLabelDtype()
    h = teacher.register_forward_hook(lambda m, i, o: out_dtypes.add(o.dtype) if probe.in_batch else None)
    learn.add_cb(probe)
    try: quiet_fit(learn, 1)
    finally: h.remove()
    return out_dtypes, probe.dtypes


class CPUAutocast(Callback):
    "torch's CPU autocast (bfloat16) opened and closed at the events of fastai's `MixedPrecision` (which is CUDA-only)."
    order = 10
    def before_batch(self): self.ctx = torch.autocast('cpu', dtype=torch.bfloat16); self.ctx.__enter__()
    def after_pred(self): self.learn.pred = self.pred.float()
    def after_loss(self): self.ctx.__exit__(None, None, None)


def test_teacher_runs_inside_the_autocast_and_hands_float32_labels(data, teacher):
    set_seed(0)
    learn = distilled_learner(distilled_dls(data[0], aug=None, device='cpu', seed=0, bs=10), small_student(),
                              teacher=teacher, cbs=[CPUAutocast()])
    out, soft = _autocast_fit(learn, teacher)
    assert out == {torch.bfloat16}  # the teacher ran under the autocast
    assert soft == {torch.float32}  # the loss gets float32 soft labels


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fastai's MixedPrecision opens a CUDA autocast: it does nothing on the CPU")
def test_fastai_to_fp16_on_cuda(data, teacher):
    import copy, fastai.callback.fp16  # noqa: F401
    t = copy.deepcopy(teacher)
    set_seed(0)
    learn = distilled_learner(distilled_dls(data[0], aug=None, device='cuda', seed=0, bs=10), small_student(),
                              teacher=t).to_fp16()
    out, soft = _autocast_fit(learn, t)
    assert out == {torch.float16} and soft == {torch.float32}


# -- fastai's tools on a distilled_learner

@pytest.fixture(scope='module')
def trained(data, teacher):
    train, test = data
    set_seed(0)
    learn = distilled_learner(distilled_dls(train, valid=test, aug=None, device='cpu', seed=0), 'convnet3',
                              teacher=teacher, arch_kwargs=dict(width=16))
    return quiet_fit(learn, 15)


def test_get_preds(trained, data):
    test = data[1]
    preds, y, dec = trained.get_preds(with_decoded=True)   # targets: the hard labels (with_soft=True adds the soft ones)
    assert preds.shape == (len(test), C)
    torch.testing.assert_close(preds.sum(1), torch.ones(len(test)))
    assert torch.equal(y, test.labels)  # in the set's order
    assert torch.equal(dec, preds.argmax(1))
    assert (dec == y).float().mean() > 0.9


def test_test_dl_and_predict(trained, data, teacher):
    test = data[1]
    ref, _ = trained.get_preds()
    # a labelled DistilledSet: the same predictions, with targets
    p1, y1 = trained.get_preds(dl=trained.dls.test_dl(test))
    torch.testing.assert_close(p1, ref); assert torch.equal(y1, test.labels)
    # uint8 images: no targets
    p2, t2 = trained.get_preds(dl=trained.dls.test_dl(test.images))
    torch.testing.assert_close(p2, ref); assert t2 is None
    # one image
    i = 7
    name, idx, probs = trained.predict(test.images[i])
    assert name == test.classes[int(ref[i].argmax())] and int(idx) == int(ref[i].argmax())
    torch.testing.assert_close(probs, ref[i])
    # a teacher that also relabels validation batches lets unlabelled batches through
    trained.cbs.filter(lambda c: isinstance(c, TeacherRelabel))[0].run_valid = True
    try: assert trained.predict(test.images[i])[0] == name
    finally: trained.cbs.filter(lambda c: isinstance(c, TeacherRelabel))[0].run_valid = False
    with pytest.raises(InputError, match=r"test images are 1x16x16 \(CxHxW\) but the learner's data 3x16x16"):
        trained.dls.test_dl(test.images[:, :1])
    renamed = DistilledSet(test.images, test.labels, classes=list('abcd'))
    with pytest.raises(InputError, match='one class list in one order'): trained.dls.test_dl(renamed)
    with pytest.raises(InputError, match='cannot read image a.png'): trained.dls.test_dl(['a.png'])   # files are read: this one is missing
    with pytest.raises(InputError, match='test items must be a DistilledSet'): trained.dls.test_dl([1.5])


def test_show_results(trained, data):
    plt.close('all')
    trained.show_results(max_n=4)
    axes = [ax for ax in plt.gcf().axes if ax.get_title()]
    assert len(axes) == 4 and all(ax.images for ax in axes)  # one figure: 4 images on a grid
    for ax in axes:
        pred, cls = ax.get_title().split('\n')[0].split(' / ')
        assert pred in data[1].classes and cls in data[1].classes
        assert ax.title.get_color() == ('green' if pred == cls else 'red')
    plt.close('all')


@pytest.mark.filterwarnings("ignore:load_learner` uses Python's insecure pickle")
def test_export_and_load_learner(trained, data, tmp_path):
    test = data[1]
    trained.path = tmp_path
    trained.export('learner.pkl')
    assert len(trained.dls.train.dataset) == len(data[0])  # the learner keeps its data
    loaded = load_learner(tmp_path / 'learner.pkl')
    assert len(loaded.dls.train.dataset) == 0 and len(loaded.dls.valid.dataset) == 0  # exported without the images
    assert loaded.dls.c == C and loaded.dls.vocab == test.classes
    assert any(isinstance(cb, TeacherRelabel) for cb in loaded.cbs)
    ref, _ = trained.get_preds()
    preds, _ = loaded.get_preds(dl=loaded.dls.test_dl(test.images))
    torch.testing.assert_close(preds, ref)
    assert loaded.predict(test.images[3])[0] == trained.predict(test.images[3])[0]
