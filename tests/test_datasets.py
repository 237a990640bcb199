"The real Fashion-MNIST, read from the Debian package `dataset-fashion-mnist` (skipped when it is not installed)."
import gzip, shutil
import numpy as np
import pytest
from gift_fastai.datasets import get_dataset, channel_stats, DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES

FILES = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
needs_debian = pytest.mark.skipif(
    not all((DEBIAN_FASHION_MNIST / f).is_file() for f in FILES),
    reason=f"the real Fashion-MNIST is not installed in {DEBIAN_FASHION_MNIST} "
           f"(as root: apt-get install -y dataset-fashion-mnist)")


def _raw(name, offset):
    "The values of a gzipped IDX file, read with plain numpy (header skipped), independently of the code under test."
    return np.frombuffer(gzip.open(DEBIAN_FASHION_MNIST / name).read(), np.uint8, offset=offset)


@needs_debian
def test_real_fashion_mnist():
    train, test = get_dataset('fashion-mnist')  # no path: the Debian package's folder
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert str(train.images.dtype) == 'torch.uint8' and str(train.labels.dtype) == 'torch.int64'
    assert train.classes == test.classes == FASHION_MNIST_CLASSES and train.n_classes == 10
    assert train.class_counts.tolist() == [6000] * 10 and test.class_counts.tolist() == [1000] * 10
    assert train.meta == dict(source='fashion-mnist', split='train') and test.meta['split'] == 'test'

    x, y = _raw('train-images-idx3-ubyte.gz', 16), _raw('train-labels-idx1-ubyte.gz', 8)
    assert len(x) == 60000 * 784 and len(y) == 60000
    assert np.array_equal(train.images.numpy().reshape(-1), x) and np.array_equal(train.labels.numpy(), y)
    assert np.array_equal(test.labels.numpy(), _raw('t10k-labels-idx1-ubyte.gz', 8))
    assert int(train.images.sum()) == int(x.sum(dtype=np.int64))
    assert train.labels[0] == 9 and test.labels[0] == 9  # both splits start with an ankle boot

    mean, std = channel_stats(train.images)
    assert abs(mean[0] - x.mean() / 255) < 1e-9 and abs(std[0] - (x / 255).std()) < 1e-9
    assert abs(mean[0] - 0.2861) < 1e-3 and abs(std[0] - 0.3530) < 1e-3  # the published stats
    assert train.stats == test.stats == ((0.2861,), (0.3530,))


@needs_debian
def test_real_fashion_mnist_uncompressed(tmp_path):
    "The same files decompressed (as some mirrors ship them) give the same sets."
    for f in FILES:
        with gzip.open(DEBIAN_FASHION_MNIST / f) as src, open(tmp_path / f[:-3], 'wb') as dst: shutil.copyfileobj(src, dst)
    a, b = get_dataset('fashion-mnist'), get_dataset('fashion-mnist', tmp_path)
    for s, t in zip(a, b):
        assert np.array_equal(s.images.numpy(), t.images.numpy()) and np.array_equal(s.labels.numpy(), t.labels.numpy())
