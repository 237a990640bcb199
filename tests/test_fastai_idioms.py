"""Every fastai idiom a user reaches for, tried on a learner from `distilled_learner`: each works, or refuses clearly.

The list: show_batch, lr_find, fit_one_cycle, get_preds, predict (tensor, array, file, PIL image), test_dl, show_results,
ClassificationInterpretation (confusion matrix, most confused, plots, top losses), export/load_learner, MixUp/CutMix,
to_fp16/to_bf16, SaveModelCallback/EarlyStopping, a DataBlock without Normalize, and a seeded one-line fit."""
import warnings
import numpy as np
import pytest, torch
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from PIL import Image
import fastai.vision.all  # noqa: F401  (what a fastai user imports, registering fastai's vision methods: it must not break ours)
from fastai.vision.all import (Learner, accuracy, load_learner, DataBlock, ImageBlock, PILImageBW, CategoryBlock, get_image_files,
                               RandomSplitter, Normalize)
from fastai.interpret import ClassificationInterpretation
from fastai.callback.mixup import MixUp, CutMix
from fastai.callback.tracker import SaveModelCallback, EarlyStoppingCallback
from gift_fastai.core import InputError
from gift_fastai.data import DistilledSet, distilled_dls, export_folders
from gift_fastai.learner import distilled_learner, DistilledLearner
from conftest import blobs, trained_teacher


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp('idioms')
    train, test, teacher = blobs(5), blobs(10, seed=1), trained_teacher()
    mean, std = teacher.teacher_meta['mean'], teacher.teacher_meta['std']
    dls = distilled_dls(train, valid=test, device='cpu', seed=0, mean=mean, std=std)
    learn = distilled_learner(dls, 'convnet3', teacher=teacher, arch_kwargs=dict(width=8), path=d)
    with learn.no_bar(), learn.no_logging(): learn.fit(4)
    return dict(dir=d, train=train, test=test, teacher=teacher, learn=learn, mean=mean, std=std,
                folder=export_folders(test, d / 'test_png'))


def _last_cmap():
    name = plt.gcf().axes[0].images[0].get_cmap().name; plt.close('all'); return name


def test_learner_is_a_fastai_learner(setup):
    assert isinstance(setup['learn'], Learner) and isinstance(setup['learn'], DistilledLearner)


def test_show_batch_and_show_results_draw_grey_images_in_grey(setup):
    learn = setup['learn']
    learn.dls.show_batch(max_n=4); assert _last_cmap() == 'gray'
    with learn.no_bar(): learn.show_results(max_n=4)
    assert _last_cmap() == 'gray'   # (fastai.vision.all is imported: our loaders still draw their own results)
    assert plt.get_fignums() == []


def test_get_preds_targets_are_the_hard_labels(setup):
    learn, test = setup['learn'], setup['test']
    with learn.no_bar(): preds, y = learn.get_preds()
    assert preds.shape == (len(test), 4) and torch.equal(y, test.labels)
    with learn.no_bar(): _, (y2, soft), dec = learn.get_preds(with_soft=True, with_decoded=True)
    assert torch.equal(y2, test.labels) and soft.shape == (len(test), 4) and torch.equal(dec, preds.argmax(1))
    with learn.no_bar(): assert float(accuracy(preds, y)) == pytest.approx(float(learn.validate()[1]))


def test_predict_on_a_tensor_an_array_a_file_and_a_pil_image(setup):
    learn, test, folder = setup['learn'], setup['test'], setup['folder']
    f = sorted((folder / '00002').iterdir())[0]                       # test image 20: class 2 ('s')
    with learn.no_bar():
        outs = [learn.predict(o) for o in (test.images[20], test.images[20].numpy(), f, str(f), Image.open(f))]
    for cls, idx, probs in outs:
        assert cls == outs[0][0] and int(idx) == int(outs[0][1]) and torch.allclose(probs, outs[0][2], atol=1e-6)
    assert abs(float(outs[0][2].sum()) - 1) < 1e-5
    big = Image.open(f).resize((40, 40))                             # another size: resized to the training images'
    with learn.no_bar(): assert learn.predict(big)[2].shape == (4,)
    with pytest.raises(InputError, match="test images are 3x16x16"):
        learn.predict(torch.zeros(3, 16, 16, dtype=torch.uint8))     # a tensor is never converted silently


def test_test_dl_on_files_tensors_and_sets(setup):
    learn, test, folder = setup['learn'], setup['test'], setup['folder']
    files = sorted(folder.rglob('*.png'))
    with learn.no_bar():
        a = learn.get_preds(dl=learn.dls.test_dl(files))[0]
        b = learn.get_preds(dl=learn.dls.test_dl(test.images))[0]
        c, y = learn.get_preds(dl=learn.dls.test_dl(test))
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(b, c, atol=1e-6) and torch.equal(y, test.labels)


def test_classification_interpretation(setup):
    learn, test = setup['learn'], setup['test']
    with learn.no_bar():
        interp = ClassificationInterpretation.from_learner(learn)
        cm = interp.confusion_matrix()
        preds = learn.get_preds()[0].argmax(1)
    expected = np.zeros((4, 4), dtype=int)
    for t, p in zip(test.labels.tolist(), preds.tolist()): expected[t, p] += 1
    assert (cm == expected).all() and cm.sum() == len(test)
    with learn.no_bar():
        mc = interp.most_confused()
        interp.plot_confusion_matrix(); plt.close('all')
        interp.plot_top_losses(3); plt.close('all')
    assert all(a != b and n == expected[test.classes.index(a), test.classes.index(b)] for a, b, n in mc)
    assert len(interp.top_losses(5)[0]) == 5


def test_lr_find_fit_one_cycle_and_callbacks(setup):
    train, test, teacher, d = setup['train'], setup['test'], setup['teacher'], setup['dir']
    dls = distilled_dls(train, valid=test, device='cpu', seed=0, mean=setup['mean'], std=setup['std'])
    learn = distilled_learner(dls, 'convnet3', teacher=teacher, arch_kwargs=dict(width=8), path=d)
    with learn.no_bar(), learn.no_logging():
        assert learn.lr_find(show_plot=False).valley > 0
        learn.fit_one_cycle(3, 1e-3, cbs=[SaveModelCallback(fname='best'), EarlyStoppingCallback(patience=5)])
        learn.fit(2, cbs=[MixUp()])
        learn.fit(2, cbs=[CutMix()])
    assert (d / 'models' / 'best.pth').exists()
    assert all(np.isfinite(v) for v in learn.recorder.values[-1])


def test_export_and_load_learner(setup):
    learn, test = setup['learn'], setup['test']
    learn.export('exported.pkl')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # load_learner warns about pickles from unknown sources
        loaded = load_learner(setup['dir'] / 'exported.pkl')
    with learn.no_bar(), loaded.no_bar():
        assert torch.allclose(loaded.get_preds(dl=loaded.dls.test_dl(test.images))[0], learn.get_preds()[0], atol=1e-5)
        assert loaded.predict(test.images[0])[0] == learn.predict(test.images[0])[0]


def test_fp16_and_bf16_are_refused_off_cuda(setup):
    learn = setup['learn']
    for f in (learn.to_fp16, learn.to_bf16):
        with pytest.raises(InputError, match="precision='bf16'"): f()
    assert not any(type(c).__name__ == 'MixedPrecision' for c in learn.cbs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda(setup):
    dls = distilled_dls(setup['train'], valid=setup['test'], device='cuda', seed=0, mean=setup['mean'], std=setup['std'])
    learn = distilled_learner(dls, 'convnet3', teacher=setup['teacher'], arch_kwargs=dict(width=8)).to_fp16()
    with learn.no_bar(), learn.no_logging(): learn.fit(1)


def test_a_datablock_without_normalize_is_warned_about(setup):
    train, teacher = setup['train'], setup['teacher']
    folder = export_folders(train, setup['dir'] / 'train_png')
    from gift_fastai.data import SoftLabelBlock, soft_getter
    label = lambda p: train.classes[int(p.parent.name)]
    blocks = dict(blocks=(ImageBlock(PILImageBW), CategoryBlock(vocab=train.classes), SoftLabelBlock(vocab=train.classes)), n_inp=1,
                  get_items=get_image_files, get_y=[label, soft_getter(train.classes, label_func=label)], splitter=RandomSplitter(seed=0))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        distilled_learner(DataBlock(**blocks).dataloaders(folder, bs=8, num_workers=0), 'convnet3', teacher=teacher, arch_kwargs=dict(width=8))
    assert any('do not normalise the images (no Normalize' in str(m.message) for m in w), [str(m.message) for m in w]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        norm = Normalize.from_stats(setup['mean'], setup['std'], cuda=False)
        ok = DataBlock(**blocks, batch_tfms=norm).dataloaders(folder, bs=8, num_workers=0)
        distilled_learner(ok, 'convnet3', teacher=teacher, arch_kwargs=dict(width=8))
    assert not any('normalise' in str(m.message) for m in w), [str(m.message) for m in w]


def test_the_one_line_fit_is_reproducible(setup):
    "distilled_learner seeds the student's weights (seed=0 by default): the README's fit gives the same numbers every time."
    def fit():
        dls = distilled_dls(setup['train'], valid=setup['test'], device='cpu', seed=0, mean=setup['mean'], std=setup['std'])
        torch.randn(7)   # whatever ran before: the process's random state does not matter...
        learn = distilled_learner(dls, 'convnet3', teacher=setup['teacher'], arch_kwargs=dict(width=8))
        with learn.no_bar(), learn.no_logging(): learn.fit(2)
        return learn.recorder.values
    state = torch.random.get_rng_state()
    assert fit() == fit()
    learn = distilled_learner(distilled_dls(setup['train'], device='cpu'), 'convnet3', arch_kwargs=dict(width=8), seed=None)
    assert learn is not None and not torch.equal(torch.random.get_rng_state(), state)  # ...and seed=None draws from it
