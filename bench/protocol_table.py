"""Every method's protocol on the embedded Fashion-MNIST RDED set (IPC 10), each with its own loss and with GIFT.

Run by hand (it is not a test): `python bench/protocol_table.py --epochs 100 --repeats 3 --out nbs/repro/protocols`.
Resumable: re-running with the same --out trains only the runs it does not hold. It writes results.csv (one row per
run), summary.csv, summary.md / summary.tex (the table the docs show) and loss_bars.png.

What is shortened or adapted, and why (the table says it too):
- every protocol runs --epochs epochs (its schedule and test rule scaled to them), not its 100-1001;
- the images are grey, so every protocol normalises with the teacher's statistics (norm='teacher'): the named
  3-channel statistics of RDED, SRe2L, G-VBSM and EDC do not apply to one channel; DATM whitens as it does (ZCA,
  eps 0.1, fitted on the full Fashion-MNIST train split: --real, the Debian package `dataset-fashion-mnist`);
- DATM trains at its set's learned lr; the RDED set has none, so at DATM's initial value 0.01 (a warning says so);
- DATM trains on stored logits: here the teacher's logits on the set's images (what DATM's learned labels start from),
  stored once with `store_soft_labels`; the other protocols relabel every batch with the teacher and ignore them;
- one teacher (the embedded ConvNet-3), so G-VBSM's and EDC's ensembles are that teacher.
The same grid on the command line: gift-ablate --data <the soft-labelled set> --protocol gift,rded,... --loss own,gift
--norm teacher --epochs 100 --repeats 3, then gift-ablate --protocol datm --real fashion-mnist into the same --out.
"""
import argparse, sys, time
from pathlib import Path
import torch
from gift_fastai.assets import asset_path, load_set
from gift_fastai.teachers import load_teacher, store_soft_labels
from gift_fastai.experiments import expand_grid, run_grid, summarise_grid, plot_grid
from gift_fastai.engine import ResultsStore, write_tables

PROTOCOLS = ['gift', 'gift-sgd', 'rded', 'sre2l', 'sre2l-cifar', 'sre2l-tiny', 'gvbsm', 'gvbsm-cifar100', 'edc', 'edc-cifar10', 'datm']

def protocol_loss_table(s, title):
    "Rows: protocols; columns: the protocol's own loss (KL under the GIFT evaluator's), its accuracy, GIFT's, the difference (mean ± population std, %)."
    from rich.table import Table
    from gift_fastai.protocols import get_protocol
    t = Table(title=title, caption="final test accuracy (%), mean ± population std over seeds; best = best of the protocol's own test "
              "epochs (test-set selection); own loss: the protocol's (KL under gift and gift-sgd, whose own is GIFT); Δ = GIFT − own loss (final)")
    for c, j in (('protocol', 'left'), ('own loss', 'left'), ('own: final', 'right'), ('own: best', 'right'), ('GIFT: final', 'right'),
                 ('GIFT: best', 'right'), ('Δ final', 'right')):
        t.add_column(c, justify=j)
    for name in dict.fromkeys(s.protocol):
        own = [l for l in get_protocol(name).run_losses() if l != 'gift'][0]
        r = {l: s[(s.protocol == name) & (s.loss == l)].iloc[0] for l in {own, 'gift'} if ((s.protocol == name) & (s.loss == l)).any()}
        f = lambda l, m: f"{r[l][m + '_mean']:.1f} ± {r[l][m + '_std']:.1f}" if l in r else '-'
        d = f"{r['gift'].final_mean - r[own].final_mean:+.1f}" if own in r and 'gift' in r else ''
        t.add_row(name, own, f(own, 'final'), f(own, 'best'), f('gift', 'final'), f('gift', 'best'), d)
    return t

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=100); p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--protocols', default=','.join(PROTOCOLS)); p.add_argument('--out', default='nbs/repro/protocols')
    p.add_argument('--real', default='fashion-mnist', help="the real training images DATM's ZCA is fitted on (a dataset NAME or NAME:PATH)")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    data = out / 'fmnist_rded_ipc10_soft.safetensors'
    if not data.exists():  # the embedded set with the embedded teacher's logits stored (DATM's labels); deterministic
        dset = load_set(asset_path('data'), '--data')
        store_soft_labels(dset, load_teacher(asset_path('teacher'), classes=dset.classes, shape=dset.shape), device='cpu').save(data)
    from gift_fastai.protocols import get_protocol  # each protocol with its default losses: its own and GIFT (under gift: GIFT and KL)
    cells = expand_grid(*[dict(data=[f'fmnist={data}'], protocol=[n], loss=get_protocol(n).run_losses()) for n in a.protocols.split(',')])
    t0 = time.time()
    def report(event, **info):
        if event == 'end': print(f"{info['row']['protocol']:>15} {info['row']['loss']:>7} seed {info['row']['seed']}: "
                                 f"final {100 * float(info['row']['final_acc']):.1f} % best {100 * float(info['row']['best_acc']):.1f} % "
                                 f"({float(info['row']['seconds']):.0f} s)", flush=True)
    store, kw = ResultsStore(out), dict(epochs=a.epochs, repeats=a.repeats, device='cpu', report=report)
    whiten = [c for c in cells if get_protocol(c['protocol']).norm == 'zca']  # (DATM: its own whitening, fitted on --real)
    rows = run_grid([c for c in cells if c not in whiten], store, norm='teacher', **kw) + (run_grid(whiten, store, real=a.real, **kw) if whiten else [])
    s = summarise_grid(rows)
    s.to_csv(out / 'summary.csv', index=False)
    t = protocol_loss_table(s, f"Fashion-MNIST RDED IPC 10 · convnet3 · every protocol at {a.epochs} epochs, norm=teacher (DATM: ZCA), {a.repeats} seeds")
    write_tables(t, out, 'summary'); plot_grid(s, out, 'final', t.title)
    (out / 'opt_loss_heatmap.png').unlink(missing_ok=True)  # (the optimizer follows the protocol here: not an axis of its own)
    print((out / 'summary.md').read_text()); print(f"{len(rows)} runs, {time.time() - t0:.0f} s")

if __name__ == '__main__': sys.exit(main())
