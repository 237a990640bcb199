"""Accuracy against storage of stored soft labels (issue: honest evaluation): fp32, fp16, top-k.

Run by hand (not a test), where Fashion-MNIST is installed: `python bench/label_storage.py`. The embedded RDED set
(IPC 10) gets the embedded teacher's logits as stored labels (`store_soft_labels`), kept as fp32, fp16 and top-k
(`compress_soft`), and each is trained under DATM's protocol (its loss, softce at T = 1, on the stored labels; ZCA fitted on Fashion-MNIST's train
split) for --epochs, over --seeds, tested on the embedded 2,000 test images. Writes bench/results/label_storage.json:
per form, the bytes of the labels (`soft_bytes`), of the images, and the final accuracy (mean, std, runs).
"""
import argparse, json, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    from gift_fastai.assets import load_default, load_zca
    from gift_fastai.datasets import DEBIAN_FASHION_MNIST
    from gift_fastai.engine import evaluate_distilled
    from gift_fastai.stats import compress_soft, soft_bytes, storage
    from gift_fastai.teachers import store_soft_labels
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=100)
    p.add_argument('--seeds', type=int, default=2)
    p.add_argument('--fmnist', default=str(DEBIAN_FASHION_MNIST))
    p.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'label_storage.json'))
    a = p.parse_args(argv)
    dset, teacher, test = load_default()
    soft = store_soft_labels(dset, teacher); soft.meta['lr'] = 0.01  # (DATM's protocol trains at the set's learned lr: 0.01, its initial one)
    zca = load_zca(f'fashion-mnist:{a.fmnist}', soft)
    forms, out = [('fp32', None), ('fp16', None), ('fp16', 3), ('fp16', 1)], []
    for dtype, k in forms:
        t0 = time.time()
        s = compress_soft(soft, dtype, k)
        r = evaluate_distilled(s, test, 'convnet3', 'softce', None, 'datm', seeds=a.seeds, device='cpu', zca=zca, epochs=a.epochs,
                               teacher_check=False)
        accs = [x['final_acc'] for x in r['runs']]
        st = storage(s, dtype=dtype, topk=k)
        out.append(dict(form=f"{dtype}{f' top-{k}' if k else ''}", label_bytes=soft_bytes(len(s), s.n_classes, dtype, k), image_bytes=st['images'],
                        final_mean=float(np.mean(accs)), final_std=float(np.std(accs)), runs=len(accs), seconds=round(time.time() - t0, 1)))
        print(out[-1], flush=True)
    Path(a.out).write_text(json.dumps(dict(epochs=a.epochs, seeds=a.seeds, protocol='datm', set='embedded RDED IPC 10', rows=out), indent=1))
    print(f"wrote {a.out}")


if __name__ == '__main__': main()
