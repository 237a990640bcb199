"""The ImageNet-scale data path: images per second per CPU core, peak memory at two set sizes, and a projection.

Run by hand (it is not a test): `python bench/imagenet_data.py --out bench/results/imagenet_data.json`.
It writes generated JPEGs of ImageNet's typical size (400-500 px, about 110 KB) to a temporary folder and times, in one
process pinned to one core (per-core rates):
- decode only (PIL, and torchvision.io.decode_jpeg);
- the training item path: decode → RandomResizedCrop(224) → flip, with albumentations (`ItemAugment`) and with torchvision's
  transforms on the PIL image;
- the test item path: decode → Resize(256) → CenterCrop(224), torchvision's rule on PIL (`ResizeCropItem`) and albumentations';
- the in-memory path: batches of 224-px uint8 images on the device (here the CPU) with the same crop and flip, batched (`DSA`);
then the whole disk loader (`distilled_dls` over `ImageFiles`, worker processes) and its peak resident memory at two set sizes
(the main process and its workers, read from /proc), and projects epoch and 300-epoch times for ImageNet-1K IPC 10/50/100.
Ratios within one run are what to compare: these machines drift 10-20 % between runs.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GPU_ASSUMED = {'A100': 2600, 'H100': 4000}  # assumed ResNet-18 student fwd+bwd + ResNet-18 teacher fwd, 224 px, AMP, images/s
CALIBRATE = "replace with `python bench/imagenet_data.py --gpu` on a GPU machine (it measures the step and decode_jpeg on the device)"


def photo(rng, h, w):
    "A photo-like image: smooth colour fields (low-frequency noise, upsampled) plus fine texture, so that JPEG sizes are ImageNet's."
    low = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    im = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32)
    im += rng.normal(0, 14, im.shape)
    return Image.fromarray(im.clip(0, 255).astype(np.uint8))


def make_jpegs(folder:Path, n:int, classes:int=10, seed:int=0) -> list:
    rng = np.random.default_rng(seed); files = []
    for i in range(n):
        h, w = (int(rng.integers(375, 500)), 500) if i % 2 else (500, int(rng.integers(375, 500)))
        f = folder / f'n{i % classes:08d}' / f'img_{i:06d}.JPEG'; f.parent.mkdir(parents=True, exist_ok=True)
        photo(rng, h, w).save(f, quality=90); files.append(f)
    return files


def rate(fn, items, min_s:float=3.0) -> float:
    "Items per second of fn over `items`, repeated until `min_s` seconds (after one warm-up item)."
    fn(items[0]); n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        for it in items: fn(it); n += 1
    return n / (time.perf_counter() - t0)


def per_core(files:list) -> dict:
    import torchvision.transforms as T, torchvision.io as tio
    from gift_fastai.files import ItemAugment, ResizeCropItem
    from gift_fastai.augment import RandomResizedCrop, Flip
    torch.set_num_threads(1); os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    def pil(f):
        with Image.open(f) as im: return im.convert('RGB')
    aug = ItemAugment([RandomResizedCrop((0.08, 1.0)), Flip()], 224, seed=0)
    tv = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.PILToTensor()])
    crop_pil, crop_alb = ResizeCropItem(224), ResizeCropItem(224, 'albumentations')
    def alb_train(f): return aug.augment(np.asarray(pil(f)), 0)
    def alb_test(f): return crop_alb._alb(image=np.asarray(pil(f)))['image']
    out = dict(decode_pil=rate(pil, files), decode_torchvision_io=rate(lambda f: tio.decode_jpeg(tio.read_file(str(f))), files),
               train_albumentations=rate(alb_train, files), train_torchvision=rate(lambda f: tv(pil(f)), files),
               test_pil=rate(lambda f: crop_pil._pil(pil(f)), files), test_albumentations=rate(alb_test, files))
    # the in-memory path: the same crop and flip on 224-px uint8 batches, batched on the device (here: this CPU core)
    from gift_fastai.augment import DSA
    x = torch.randint(0, 255, (64, 3, 224, 224), dtype=torch.uint8); dsa = DSA('rrc-flip', seed=0)
    def mem(_): dsa.apply(x.float().div_(255), dsa.sample(x.float()))
    out['memory_batched'] = rate(mem, [0]) * len(x)
    return out


def loader_run(root:str, n:int, workers:int, epochs:int=1) -> dict:
    "In a fresh process: one pass of the disk loader over the first n files; images/s and peak RSS of the process and its workers (MiB)."
    code = f"""
import json, os, resource, time, threading, torch
from pathlib import Path
from gift_fastai.files import ImageFiles, ItemAugment
from gift_fastai.augment import RandomResizedCrop, Flip
from gift_fastai.data import distilled_dls
fs = ImageFiles.from_folder({root!r}, check_size=False)
fs = fs[list(range({n}))]
peak = [0]
def watch():  # resident memory of this process and its workers, every 50 ms (ru_maxrss would miss the workers still running)
    pid = os.getpid()
    while True:
        try: kids = open(f'/proc/{{pid}}/task/{{pid}}/children').read().split()
        except OSError: kids = []
        tot = 0
        for q in [pid, *map(int, kids)]:
            try: tot += int(open(f'/proc/{{q}}/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
            except OSError: pass
        peak[0] = max(peak[0], tot); time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
dl = fs.dl(0, bs=64, shuffle=True, seed=0, device='cpu', num_workers={workers}, item_aug=ItemAugment([RandomResizedCrop(), Flip()], 224, seed=0))
t0, k = time.time(), 0
for _ in range({epochs}):
    for b in dl: k += len(b[0])
print(json.dumps(dict(images_per_s=k / (time.time() - t0), peak_rss_mib=peak[0] / 2 ** 20, n={n}, workers={workers})))
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1'))
    if r.returncode: raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def projection(rates:dict, cores:int=16) -> list:
    "Epoch and 300-epoch hours for ImageNet-1K IPC 10/50/100 with a ResNet-18 student on one GPU: the slower of decoding and the GPU."
    rows, dec = [], rates['train_albumentations']
    for ipc in (10, 50, 100):
        n = 1000 * ipc
        for gpu, g in GPU_ASSUMED.items():
            feed = dec * cores
            per_epoch = n / min(g, feed)
            rows.append(dict(ipc=ipc, images=n, gpu=gpu, gpu_images_per_s=g, cores=cores, decode_images_per_s=round(feed),
                             bound='decode' if feed < g else 'GPU', epoch_s=round(per_epoch, 1), hours_300=round(300 * per_epoch / 3600, 2),
                             cores_to_feed_gpu=int(np.ceil(g / dec)), test_epoch_s=round(50000 / min(g * 3, rates['test_pil'] * cores), 1)))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=64, help="generated JPEGs for the per-core rates")
    p.add_argument('--sizes', default='300,1200', help="two set sizes for the loader's peak memory")
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'imagenet_data.json'))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        sizes = [int(s) for s in a.sizes.split(',')]
        t0 = time.time(); files = make_jpegs(Path(d), max(sizes))
        kb = np.mean([f.stat().st_size for f in files]) / 1024
        print(f"{len(files)} JPEGs, mean {kb:.0f} KB, made in {time.time() - t0:.0f} s", flush=True)
        loader = [loader_run(d, n, a.workers) for n in sizes]
        for r in loader: print(f"disk loader, {r['n']} files, {r['workers']} workers: {r['images_per_s']:.0f} images/s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        rates = per_core(files[:a.n])
    for k, v in rates.items(): print(f"{k:>24}: {v:7.1f} images/s per core")
    proj = projection(rates)
    for r in proj: print(r)
    res = dict(jpeg_kb=round(kb, 1), per_core=rates, loader=loader, projection=proj, gpu_assumed=GPU_ASSUMED, calibrate=CALIBRATE,
               cpu=open('/proc/cpuinfo').read().split('model name')[1].split('\n')[0].strip(': \t'), cores=os.cpu_count(),
               torch=torch.__version__)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")

if __name__ == '__main__': main()
