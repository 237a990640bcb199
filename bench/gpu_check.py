"""The GPU check (`make gpu-check`): one prepared script for a machine with a CUDA GPU, under 8 minutes on one H100/H200.

  python bench/gpu_check.py [--out bench/results] [--budget 470] [--selftest]

On a machine without a CUDA GPU it says so and exits 0 (nothing is written). On a GPU it runs, each part timed and
guarded (a part that fails is recorded with its error and the others still run; a part that would overrun the budget is
skipped, saying so):

1. bench: `bench/bench.py --device cuda` in fp32, bf16 and fp16 (the ConvNet-3 cases, short rounds): images/s of the
   bound, ours and the reference-style loop, ours/bound and ours/reference on the GPU; then fp32 with `--compile
   reduce-overhead` (CUDA graphs; the bound compiled the same way) on the small case, and ours compiled over ours
   eager;
2. cuda tests: the tests that only run on CUDA (fastai's fp16 on our learners);
3. checkpoint: `gift-eval` on CUDA killed once it has written a checkpoint, resumed with `--device cpu --resume`;
4. nccl: `gift-eval` under `torchrun --nproc_per_node 1` on the GPU (fastai's distributed context, nccl), against
   the same run in one process;
5. runs per GPU: the same runs (ConvNet-3, CIFAR-100-shaped IPC 10, the GIFT protocol) on 1, 2, 4 and 8 local
   workers sharing the GPU (`gift_fastai.parallel.LocalExecutor`): runs per minute and images/s against one; then the
   seeds stacked (`stack_seeds`: 3 seeds of a cell as one model, `torch.func`) on one worker and on the best count;
6. levers: `bench/levers_tried.py --device cuda`: `torch.compile` of the student's step (and CUDA graphs, its
   'reduce-overhead' mode) against eager, and the `torch.func` vectorised ensemble of 3 seeds against 3 runs in turn;
7. accuracy: the embedded set, GIFT, 50 epochs, seeds 0-2, on the GPU and on the CPU: the means within noise;
8. the paper's grid (8 losses x 3 seeds, CIFAR-100-shaped IPC 10, ConvNet-3, 1000 epochs) extrapolated from the
   measured throughput of part 5 at its best number of workers, stacked or not (the faster).

Writes `<out>/gpu-check.json` (the README's performance section reads `bench/results/gpu-*.json`). `--selftest` runs
every part at toy sizes on the CPU (no GPU needed) into a temporary folder: what CI can check of this script."""
import argparse, contextlib, json, os, platform, re, shutil, signal, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
ENV = dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1',
           PYTHONWARNINGS="ignore:`torch.jit.script` is deprecated:FutureWarning")


class Budget:
    "The time left of the whole check: each part says how long it may take, and is skipped when that is not left."
    def __init__(self, seconds): self.t0, self.seconds = time.time(), seconds
    def left(self) -> float: return self.seconds - (time.time() - self.t0)


def part(results:dict, name:str, budget:Budget, need:float):
    "Run a part into results[name] (its figures, seconds, or its error); skipped when fewer than `need` seconds are left."
    def wrap(f):
        if budget.left() < need:
            results[name] = dict(skipped=f"{budget.left():.0f} s left of the budget, the part needs about {need:.0f} s"); return f
        t0 = time.time()
        try: results[name] = dict(f(), seconds=round(time.time() - t0, 1))
        except Exception as e: results[name] = dict(error=f"{type(e).__name__}: {e}"[:2000], seconds=round(time.time() - t0, 1))
        print(f"[{name}] {json.dumps(results[name])[:400]}", flush=True)
        return f
    return wrap


def run(cmd, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=ENV, capture_output=True, text=True, timeout=timeout, **kw)


def rows(folder) -> list:
    import csv
    return list(csv.DictReader(open(Path(folder) / 'results.csv')))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=str(HERE / 'results'))
    p.add_argument('--budget', type=float, default=470., help="seconds for the whole check (it stops starting parts past it)")
    p.add_argument('--selftest', action='store_true', help="every part at toy sizes on the CPU, into a temporary folder")
    a = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not a.selftest:
        print("no CUDA GPU on this machine: the GPU check has nothing to measure (run it where `torch.cuda.is_available()`).")
        return 0
    dev = 'cuda' if cuda and not a.selftest else 'cpu'
    toy = a.selftest
    work = Path(tempfile.mkdtemp(prefix='gpu-check-'))
    out = work / 'results' if toy else Path(a.out)
    budget, res = Budget(a.budget), dict(device=dev, gpu=torch.cuda.get_device_name() if dev == 'cuda' else None,
                                         torch=torch.__version__, cuda=torch.version.cuda, host_cpu=platform.processor() or platform.machine(),
                                         cpu_threads=torch.get_num_threads(), selftest=toy, date=time.strftime('%Y-%m-%d'))
    emb = ['--epochs', '2' if toy else '50']

    @part(res, 'bench', budget, 60 if toy else 210)
    def _bench():
        sys.path.insert(0, str(HERE)); import bench as B, levers as LV
        got, d = {}, work / 'bench'
        # (precision, compile mode, cases): eager at each precision, then the compiled step (an option until measured here)
        configs = [('fp32', 'off', 'c3-32-n100'), ('fp32', 'default', 'c3-32-n100')] if toy else \
                  [('fp32', 'off', 'c3-32-n100,c3-32-n1000'), ('bf16', 'off', 'c3-32-n100,c3-32-n1000'), ('fp16', 'off', 'c3-32-n100,c3-32-n1000'),
                   ('fp32', 'reduce-overhead', 'c3-32-n100')]  # ('default' mode: the levers part, on the bare step)
        for prec, mode, cases in configs:
            res_ = B.main(['--device', dev, '--precision', prec, '--compile', mode, '--seconds', '1' if toy else '4',
                           '--rounds', '2' if toy else '3', '--cases', cases, '--skip', 'loss,teacher,rded', '--out', str(d)])
            got[LV.label(res_['settings'])] = {k: {m: c.get(m) for m in ('bound_img_s', 'ours_img_s', 'reference_img_s', 'ours_over_bound',
                                                                         'ours_over_reference')} for k, c in res_['cases'].items()}
        eager, comp = got.get('fp32', {}), {k: v for k, v in got.items() if 'compile' in k}
        gain = {f'{k} / fp32': {c: round(v[c]['ours_img_s'] / eager[c]['ours_img_s'], 3) for c in v if c in eager} for k, v in comp.items()}
        return dict(cases=got, compiled_over_eager=gain)

    @part(res, 'cuda_tests', budget, 30 if toy else 90)
    def _tests():
        r = run([BIN / 'python', '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs',
                 'tests/test_fastai_idioms.py::test_fp16_on_cuda', 'tests/test_training_core.py::test_fastai_to_fp16_on_cuda'],
                timeout=300, cwd=ROOT)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
        return dict(rc=r.returncode, summary=last, ran_on_cuda='skipped' not in last)

    @part(res, 'checkpoint_cuda_to_cpu', budget, 40 if toy else 90)
    def _checkpoint():
        d, E = work / 'ck', 8 if toy else 40
        args = ['--loss', 'gift', '--repeats', '1', '--epochs', str(E), '--checkpoint-every', '2', '--out', str(d)]
        pr = subprocess.Popen([BIN / 'gift-eval', *args, '--device', dev], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        written = lambda: (d / 'checkpoints').exists() and any((d / 'checkpoints').rglob('*.pth'))
        while not written():
            if pr.poll() is not None: raise RuntimeError(f"the run ended (rc {pr.returncode}) before a checkpoint: {pr.stderr.read()[-500:]}")
            if time.time() - t0 > 120: raise RuntimeError("no checkpoint within 120 s")
            time.sleep(0.05)
        pr.send_signal(signal.SIGKILL); pr.wait()
        r = run([BIN / 'gift-eval', *args, '--device', 'cpu', '--resume'], timeout=300)
        if r.returncode: raise RuntimeError(r.stderr[-800:])
        row = rows(d)[0]
        return dict(resumed_on='cpu', final_acc=float(row['final_acc']), epochs=E, device_row=row['device'])

    @part(res, 'nccl', budget, 60 if toy else 90)
    def _nccl():
        if dev != 'cuda': return dict(skipped="no CUDA: nccl needs a GPU (CI runs the same launch on gloo, tests/test_distributed.py)")
        args = ['--loss', 'gift', '--repeats', '1', '--epochs', '10', '--device', 'cuda']
        r1 = run([BIN / 'torchrun', '--standalone', '--nproc_per_node', '1', '--no-python', BIN / 'gift-eval', *args, '--out', work / 'dist'], timeout=300)
        if r1.returncode: raise RuntimeError(r1.stderr[-800:])
        r2 = run([BIN / 'gift-eval', *args, '--out', work / 'one'], timeout=300)
        if r2.returncode: raise RuntimeError(r2.stderr[-800:])
        a_, b_ = float(rows(work / 'dist')[0]['final_acc']), float(rows(work / 'one')[0]['final_acc'])
        return dict(launched=a_, one_process=b_, same=a_ == b_, backend='nccl')

    @part(res, 'runs_per_gpu', budget, 60 if toy else 150)
    def _per_gpu():
        from gift_fastai.data import DistilledSet
        from gift_fastai.engine import Run, ResultsStore, run_all
        from gift_fastai.models import create_student
        from gift_fastai.protocols import get_protocol
        from gift_fastai.teachers import as_teacher
        from gift_fastai.parallel import make_executor
        g = torch.Generator().manual_seed(0)
        C, ipc, px = (10, 2, 16) if toy else (100, 10, 32)
        x = torch.randint(0, 256, (C * ipc, 3, px, px), generator=g, dtype=torch.uint8); y = torch.arange(C).repeat_interleave(ipc)
        dset = DistilledSet(x, y, classes=[str(c) for c in range(C)])
        tx = torch.randint(0, 256, (C * 5, 3, px, px), generator=g, dtype=torch.uint8)
        test = DistilledSet(tx, torch.arange(C).repeat_interleave(5), classes=dset.classes)
        torch.manual_seed(0); teacher = as_teacher(create_student('convnet3', C, 3, px), dset.classes, *dset.stats)
        E = 2 if toy else 20
        proto = get_protocol('gift', epochs=E, eval_every=E)
        jobs_list = [1, 2] if toy else [1, 2, 4, 8]
        n_runs = max(jobs_list) * (1 if toy else 2)
        steps = E * -(-len(dset) // proto.batch_size(len(dset), C))
        out_ = {}
        for j in jobs_list:
            runs = [Run(dset, test, teacher, 'convnet3', 'gift', proto, seed) for seed in range(n_runs)]
            t0 = time.time()
            with make_executor('local', jobs=j, device=dev) as ex:
                run_all(runs, ResultsStore(work / f'per-gpu-{j}', checkpoint_every=0), device=dev, executor=ex)
            s = time.time() - t0
            out_[j] = dict(seconds=round(s, 2), runs_per_min=round(60 * n_runs / s, 2), img_s=round(n_runs * E * len(dset) / s, 1),
                           step_s_effective=round(s / (n_runs * steps), 5))
        base = out_[1]['img_s']
        for j in out_: out_[j]['vs_one'] = round(out_[j]['img_s'] / base, 3)
        best = max(out_, key=lambda j: out_[j]['img_s'])
        # stacked seeds (`stack_seeds`: the paper's 3 seeds of a cell as one model), on one worker and on the best count
        sp, losses = proto.replace(stack_seeds=True), ['gift', 'kl', 'softce', 'mse', 'cosine', 'kd'][:max(1, n_runs // 3)]
        stacked = {}
        for j in sorted({1, best}):
            runs = [Run(dset, test, teacher, 'convnet3', l, sp, seed) for l in losses for seed in range(3)]
            t0 = time.time()
            with make_executor('local', jobs=j, device=dev) as ex:
                run_all(runs, ResultsStore(work / f'stacked-{j}', checkpoint_every=0), device=dev, executor=ex)
            s = time.time() - t0
            stacked[j] = dict(runs=len(runs), seconds=round(s, 2), img_s=round(len(runs) * E * len(dset) / s, 1),
                              step_s_effective=round(s / (len(runs) * steps), 5), vs_unstacked=round(len(runs) * E * len(dset) / s / out_[j]['img_s'], 3))
        return dict(runs=n_runs, epochs=E, images=len(dset), steps_per_run=steps, by_jobs=out_, best_jobs=best, stacked_3_seeds=stacked)

    @part(res, 'levers', budget, 60 if toy else 100)
    def _levers():
        sys.path.insert(0, str(HERE)); import levers_tried as LT
        f = work / 'levers.json'
        if toy:  # (the script's parts at their own sizes take minutes on a CPU: the self-test checks it starts and writes)
            return dict(selftest='levers_tried.py is run with --device cuda on a GPU', exists=(HERE / 'levers_tried.py').exists())
        LT.main(['--device', dev, '--out', str(f)])
        return json.loads(f.read_text())

    @part(res, 'accuracy_gpu_vs_cpu', budget, 60 if toy else 120)
    def _acc():
        got = {}
        for d_ in ([dev] if toy else [dev, 'cpu']):
            r = run([BIN / 'gift-eval', '--loss', 'gift', '--repeats', '1' if toy else '3', *emb, '--device', d_, '--out', work / f'acc-{d_}'],
                    timeout=400)
            if r.returncode: raise RuntimeError(r.stderr[-800:])
            a_ = [float(x['final_acc']) for x in rows(work / f'acc-{d_}')]
            got[d_] = dict(mean=round(100 * statistics.mean(a_), 3), std=round(100 * statistics.pstdev(a_), 3), runs=[round(100 * v, 2) for v in a_])
        if len(got) == 2:
            d_ = abs(got['cuda']['mean'] - got['cpu']['mean']); noise = 2 * max(got['cuda']['std'], got['cpu']['std'], 0.5)
            got['within_noise'] = d_ <= noise; got['difference'] = round(d_, 3)
        return got

    pg = res.get('runs_per_gpu', {})
    if 'by_jobs' in pg:  # the paper's grid: 8 losses x 3 seeds, 1000 epochs, extrapolated from the measured throughput
        best = pg['by_jobs'][pg['best_jobs']]
        st = pg.get('stacked_3_seeds', {}).get(pg['best_jobs'])
        if st and st['step_s_effective'] < best['step_s_effective']: best = dict(st, stacked=True)  # (the faster way of the two)
        per_run_s = best['step_s_effective'] * pg['steps_per_run'] / pg['epochs'] * 1000
        res['paper_grid'] = dict(runs=24, epochs=1000, seconds=round(24 * per_run_s, 1), minutes=round(24 * per_run_s / 60, 2),
                                 workers=pg['best_jobs'], stacked_seeds=bool(best.get('stacked')), note="24 runs x 1000 epochs at the best measured runs-per-GPU throughput (ConvNet-3, "
                                 "CIFAR-100-shaped IPC 10, GIFT protocol; the tests of each run at its test epochs not included)")
    out.mkdir(parents=True, exist_ok=True)
    f = out / 'gpu-check.json'
    f.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {f} in {time.time() - budget.t0:.0f} s")
    if not toy: shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
