"""Does a speed option change accuracy? The paper's protocol on real data with each setting (run by hand, part of `make bench`).

  python bench/accuracy.py [--epochs 50] [--repeats 3] [--settings fp32-nchw,fp32-cl,bf16-cl] [--out bench/results/accuracy-cpu.json]

The embedded Fashion-MNIST RDED set (IPC 10, 100 images), its ConvNet-3 teacher and 2,000 real test images;
`evaluate_distilled` with GIFT, AdamW and DSA, seeds 0..repeats-1, the same seeds for every setting. A setting
changes nothing but rounding, so the accuracies must agree within the spread of the seeds.
"""
import argparse, json, time
from pathlib import Path
import torch

SETTINGS = {  # name: the protocol's speed settings
    'fp32-nchw': dict(precision='fp32', channels_last=False),  # NCHW, the layout every version had before channels-last
    'fp32-cl': dict(precision='fp32', channels_last=True),    # the CPU default now
    'bf16-cl': dict(precision='bf16', channels_last=True),
    'bf16teacher-cl': dict(precision='fp32', teacher_precision='bf16', channels_last=True),
}


def main(argv=None):
    from gift_fastai.assets import load_default
    from gift_fastai.engine import evaluate_distilled
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=50); p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--settings', default='fp32-nchw,fp32-cl,bf16-cl')
    p.add_argument('--device', default='cpu'); p.add_argument('--out', default=None)
    a = p.parse_args(argv)
    dset, teacher, test = load_default()
    res = dict(device=a.device, threads=torch.get_num_threads(), torch=torch.__version__, epochs=a.epochs,
               repeats=a.repeats, data='embedded Fashion-MNIST RDED IPC 10', loss='gift', settings={})
    for name in a.settings.split(','):
        t0 = time.time()
        r = evaluate_distilled(dset, test, 'convnet3', loss='gift', teacher=teacher, epochs=a.epochs, seeds=a.repeats,
                               device=a.device, **SETTINGS[name])
        res['settings'][name] = dict(SETTINGS[name], final=[round(x['final_acc'], 4) for x in r['runs']],
                                     final_mean=round(r['final_mean'], 4), final_std=round(r['final_std'], 4),
                                     seconds=round(time.time() - t0, 1))
        print(name, res['settings'][name], flush=True)
    out = Path(a.out or f"bench/results/accuracy-{a.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1) + '\n')
    base = res['settings'].get('fp32-nchw')
    for name, s in res['settings'].items():
        d = f" ({100 * (s['final_mean'] - base['final_mean']):+.2f} points vs fp32-nchw)" if base and s is not base else ''
        print(f"{name:>15}: final {100 * s['final_mean']:.2f} ± {100 * s['final_std']:.2f}%{d}, {s['seconds']:.0f} s")
    print(f"wrote {out}")
    return res


if __name__ == '__main__': main()
