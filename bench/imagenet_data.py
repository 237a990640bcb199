"""The ImageNet-scale data path: images per second per CPU core, peak memory at two set sizes, and a projection.

Run by hand (it is not a test): `python bench/imagenet_data.py --out bench/results/imagenet_data.json`.
It writes generated JPEGs of ImageNet's typical size (400-500 px, about 110 KB) to a temporary folder and times, in one
process pinned to one core (per-core rates):
- decode only (PIL, and torchvision.io.decode_jpeg);
- the training item path: decode → RandomResizedCrop(224) → flip, with albumentations (`ItemAugment`) and with torchvision's
  transforms on the PIL image;
- the test item path: decode → Resize(256) → CenterCrop(224), torchvision's rule on PIL (`ResizeCropItem`) and albumentations';
- the in-memory path: batches of 224-px uint8 images on the device (here the CPU) with the same crop and flip, batched (`DSA`);
- the device decoder's path on this CPU core: torchvision's decode_jpeg, then `resize_crop` (what `decode='device'` runs per image);
then the whole disk loader (`distilled_dls` over `ImageFiles`, worker processes) and its peak resident memory at two set sizes
(the main process and its workers, read from /proc), and projects epoch and 300-epoch times for ImageNet-1K IPC 10/50/100.
With --gpu on a machine with a CUDA GPU it also measures there: the training step (ResNet-18 student forward and backward and
ResNet-18 teacher forward, 224 px, bf16 autocast, channels-last, batch 256) and decode_jpeg(device='cuda') + resize_crop on batches
of the generated JPEGs; the projection then uses the measured step in place of the assumed rates. Without a GPU, --gpu says so.
Ratios within one run are what to compare: these machines drift 10-20 % between runs.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GPU_ASSUMED = {'A100': 2600, 'H100': 4000}  # assumed ResNet-18 student fwd+bwd + ResNet-18 teacher fwd, 224 px, AMP, images/s
CALIBRATE = "measured with `python bench/imagenet_data.py --gpu` on a GPU machine (the step and decode_jpeg on the device), else assumed"


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
    from gift_fastai.files import decode_batch, resize_crop
    def dev_cpu(f): return resize_crop(decode_batch([tio.read_file(str(f))], 'RGB', 'cpu')[0], (224, 224))
    out['test_device_path_on_cpu'] = rate(dev_cpu, files)
    return out


def gpu_rates(files:list, bs:int=256, steps:int=30) -> dict:
    "On a CUDA GPU: images/s of the ResNet-18 training step with its ResNet-18 teacher, and of decode_jpeg on the device + resize_crop."
    import torchvision, torchvision.io as tio
    from gift_fastai.files import decode_batch, resize_crop
    dev = torch.device('cuda')
    student = torchvision.models.resnet18().to(dev, memory_format=torch.channels_last)
    teacher = torchvision.models.resnet18().to(dev, memory_format=torch.channels_last).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    x = torch.randn(bs, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
    def step():
        with torch.autocast('cuda', torch.bfloat16):
            with torch.no_grad(): t = teacher(x)
            z = student(x)
            loss = torch.nn.functional.kl_div(z.float().log_softmax(1), t.float().softmax(1), reduction='batchmean')
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for _ in range(5): step()
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize(); step_rate = steps * bs / (time.perf_counter() - t0)
    data = [tio.read_file(str(f)) for f in files]
    batch = (data * (bs // len(data) + 1))[:bs]
    def dec(): return torch.stack([resize_crop(im, (224, 224)) for im in decode_batch(batch, 'RGB', dev)])
    for _ in range(3): dec()
    torch.cuda.synchronize(); t0 = time.perf_counter(); n = 10
    for _ in range(n): dec()
    torch.cuda.synchronize()
    return dict(gpu=torch.cuda.get_device_name(0), train_step_images_per_s=step_rate, decode_resize_images_per_s=n * bs / (time.perf_counter() - t0), bs=bs)


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


def projection(rates:dict, cores:int=16, gpus:dict|None=None) -> list:
    "Epoch and 300-epoch hours for ImageNet-1K IPC 10/50/100 with a ResNet-18 student on one GPU: the slower of decoding and the GPU."
    rows, dec = [], rates['train_albumentations']
    for ipc in (10, 50, 100):
        n = 1000 * ipc
        for gpu, g in (gpus or GPU_ASSUMED).items():
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
    p.add_argument('--gpu', action='store_true', help="also measure the step and decode_jpeg on a CUDA GPU (says so and skips without one)")
    p.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'imagenet_data.json'))
    a = p.parse_args(argv)
    gpu = None
    if a.gpu and not torch.cuda.is_available(): print("--gpu: no CUDA GPU here; the projection keeps the assumed GPU rates", flush=True)
    with tempfile.TemporaryDirectory() as d:
        sizes = [int(s) for s in a.sizes.split(',')]
        t0 = time.time(); files = make_jpegs(Path(d), max(sizes))
        kb = np.mean([f.stat().st_size for f in files]) / 1024
        print(f"{len(files)} JPEGs, mean {kb:.0f} KB, made in {time.time() - t0:.0f} s", flush=True)
        loader = [loader_run(d, n, a.workers) for n in sizes]
        for r in loader: print(f"disk loader, {r['n']} files, {r['workers']} workers: {r['images_per_s']:.0f} images/s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        if a.gpu and torch.cuda.is_available():
            gpu = gpu_rates(files[:a.n])
            print(f"GPU {gpu['gpu']}: training step {gpu['train_step_images_per_s']:.0f} images/s, decode_jpeg + resize_crop "
                  f"{gpu['decode_resize_images_per_s']:.0f} images/s", flush=True)
        rates = per_core(files[:a.n])
    for k, v in rates.items(): print(f"{k:>24}: {v:7.1f} images/s per core")
    proj = projection(rates, gpus={gpu['gpu']: round(gpu['train_step_images_per_s'])} if gpu else None)
    for r in proj: print(r)
    res = dict(jpeg_kb=round(kb, 1), per_core=rates, loader=loader, projection=proj, gpu_assumed=GPU_ASSUMED, calibrate=CALIBRATE, gpu_measured=gpu,
               cpu=open('/proc/cpuinfo').read().split('model name')[1].split('\n')[0].strip(': \t'), cores=os.cpu_count(),
               torch=torch.__version__)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")

if __name__ == '__main__': main()
