"""A 4-cell gift-ablate grid on local worker processes against one run after another (run by hand).

  python bench/parallel_grid.py [--epochs 100] [--rounds 2] [--jobs 2] [--out bench/results]

The grid: the embedded Fashion-MNIST set, losses gift and kl x optimizers adamw and sgd, one repeat, `--epochs` epochs, the
GIFT protocol. Three ways, as whole `gift-ablate` processes into fresh folders, taking turns in each round (a slow spell
of the machine hits them alike), the median wall time of each reported with their ratio:

- `--jobs 1`: one run after another in one process, torch's default threads (all the cores);
- `--jobs J`: J worker processes, each pinned to its share of the cores (`gift_fastai.parallel.LocalExecutor`);
- `--jobs 1 --threads cores/J`: one after another at a worker's threads: the reference whose rows the parallel grid
  must reproduce exactly (a CPU run's floats depend on its thread count; at the same count they are the same).

Writes `<out>/parallel-grid-cpu.json` and prints a table."""
import argparse, csv, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = dict(os.environ, NO_ALBUMENTATIONS_UPDATE='1', PYTHONWARNINGS="ignore:`torch.jit.script` is deprecated:FutureWarning")


def result(folder) -> list:
    return sorted((r['key'], r['final_acc'], r['best_acc'], r['evals'], r['per_class']) for r in csv.DictReader(open(Path(folder) / 'results.csv')))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epochs', type=int, default=100)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results'))
    a = p.parse_args(argv)
    from gift_fastai.parallel import slots
    share = len(slots(a.jobs, 'cpu')[0]['cores'])
    grid = ['--loss', 'gift,kl', '--opt', 'adamw,sgd', '--repeats', '1', '--epochs', str(a.epochs), '--device', 'cpu']
    ways = {'jobs 1': [], f'jobs {a.jobs}': ['--jobs', str(a.jobs)], f'jobs 1, threads {share}': ['--threads', str(share)]}
    work, times, rows = Path(tempfile.mkdtemp()), {k: [] for k in ways}, {}
    for r in range(a.rounds):
        for k, extra in ways.items():
            out = work / f"{k.replace(' ', '').replace(',', '-')}-{r}"
            t0 = time.time()
            done = subprocess.run([str(BIN / 'gift-ablate'), *grid, *extra, '--out', str(out)], env=ENV, capture_output=True, text=True)
            times[k].append(time.time() - t0)
            if done.returncode: raise SystemExit(f"{k} failed: {done.stderr[-2000:]}")
            rows.setdefault(k, result(out))
            print(f"round {r}: {k}: {times[k][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    j, ref = f'jobs {a.jobs}', f'jobs 1, threads {share}'
    res = dict(grid='embedded set, gift,kl x adamw,sgd, 1 repeat', epochs=a.epochs, cores=os.cpu_count(), share=share, rounds=a.rounds,
               seconds={k: [round(x, 1) for x in v] for k, v in times.items()}, median={k: round(v, 1) for k, v in med.items()},
               speedup_vs_jobs1=round(med['jobs 1'] / med[j], 3), speedup_vs_same_threads=round(med[ref] / med[j], 3),
               identical_to_same_threads=rows[j] == rows[ref], identical_to_jobs1=rows[j] == rows['jobs 1'],
               final_acc={k: [round(100 * float(x[1]), 2) for x in v] for k, v in rows.items()})
    Path(a.out).mkdir(parents=True, exist_ok=True)
    f = Path(a.out) / 'parallel-grid-cpu.json'; f.write_text(json.dumps(res, indent=1) + '\n')
    print(json.dumps({k: res[k] for k in ('median', 'speedup_vs_jobs1', 'speedup_vs_same_threads', 'identical_to_same_threads', 'identical_to_jobs1')}))
    print(f"wrote {f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
