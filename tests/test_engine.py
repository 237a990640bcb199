"""The engine across processes: several processes write one results folder at once (a bare store, and two real grids that
overlap), and importing the library loads no command module and changes nothing in fastai."""
import csv, json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest

ENV = dict(os.environ, OMP_NUM_THREADS='1', NO_ALBUMENTATIONS_UPDATE='1', PYTHONWARNINGS='ignore')


def rows_of(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))


def run_together(*cmds, timeout=600):
    "Start every command at once; wait for all; their (returncode, stdout, stderr)."
    ps = [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=timeout) for p in ps]
    return [(p.returncode, *o) for p, o in zip(ps, outs)]


WRITER = textwrap.dedent("""
    import sys, time
    from gift_fastai.engine import ResultsStore, COLUMNS
    store, lo, hi = ResultsStore(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    while not __import__('os').path.exists(sys.argv[4]): time.sleep(0.001)   # start together
    added = sum(store.add(dict(key=f'k{i:04d}', loss='kl', seed=i, final_acc=i / 1000, best_acc=i / 1000, seconds=0.0))
                for i in range(lo, hi))
    print(added)
""")


def test_two_processes_append_to_one_store_without_losing_or_duplicating_a_row(tmp_path):
    "Keys 0..299 and 100..399 written at once by two processes: 400 rows, each key once, each row whole."
    go = tmp_path / 'go'
    cmds = [[sys.executable, '-c', WRITER, str(tmp_path / 'store'), lo, hi, str(go)] for lo, hi in (('0', '300'), ('100', '400'))]
    ps = [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    go.write_text('go')
    outs = [p.communicate(timeout=300) for p in ps]
    assert all(p.returncode == 0 for p in ps), [o[1][-2000:] for o in outs]
    rows = rows_of(tmp_path / 'store' / 'results.csv')
    keys = [r['key'] for r in rows]
    assert len(keys) == len(set(keys)) == 400 and set(keys) == {f'k{i:04d}' for i in range(400)}
    assert all(float(r['final_acc']) == int(r['seed']) / 1000 for r in rows)   # no row torn or mixed
    assert sum(int(o[0]) for o in outs) == 400                                    # every key added by exactly one of them


def test_two_grids_that_overlap_run_into_one_folder_at_once(files, tmp_path):
    "gift-ablate twice at once into one --out, {gift, kl} and {kl, cosine}: every cell once, each trained by one process."
    exe = Path(sys.executable).with_name('gift-ablate')
    if not exe.exists(): pytest.skip(f"gift-ablate not found next to {sys.executable}")
    common = ['--data', f"toy={files['data']}", '--test', files['test'], '--teacher', files['teacher'], '--epochs', '15',
              '--repeats', '2', '--checkpoint-every', '5', '--out', str(tmp_path / 'grid')]
    res = run_together([str(exe), '--loss', 'gift,kl', *common], [str(exe), '--loss', 'kl,cosine', *common])
    assert all(rc == 0 for rc, _, _ in res), [err[-2000:] for _, _, err in res]
    rows = rows_of(tmp_path / 'grid' / 'results.csv')
    assert sorted((r['loss'], r['seed']) for r in rows) == sorted((l, s) for l in ('gift', 'kl', 'cosine') for s in '01')
    assert len({r['key'] for r in rows}) == 6
    trained = [line for _, out, _ in res for line in out.splitlines() if ': final ' in line]
    assert len(trained) == 6, trained                              # the two kl runs were trained once, by one of them
    assert not (tmp_path / 'grid' / 'checkpoints').exists()
    # each process summarised its own grid, with the rows the other one trained
    for (_, out, _), losses in zip(res, (('gift', 'kl'), ('kl', 'cosine'))):
        assert all(f'loss={l}' in ' '.join(out.split()) for l in losses), out


IMPORTS = textwrap.dedent("""
    import inspect, json, pkgutil, sys, importlib
    import gift_fastai
    mods = [m.name for m in pkgutil.iter_modules(gift_fastai.__path__) if m.name not in ('cli', '_modidx')]
    for m in mods: importlib.import_module(f'gift_fastai.{m}')
    patched = []
    for name, mod in list(sys.modules.items()):
        if not (name.startswith('fastai') or name.startswith('fastcore')) or mod is None: continue
        for cname, cls in list(vars(mod).items()):
            if not inspect.isclass(cls) or not cls.__module__.startswith(('fastai', 'fastcore')): continue
            for k, v in list(vars(cls).items()):
                f = getattr(v, '__func__', getattr(v, 'fget', v))
                if getattr(f, '__module__', '') and str(getattr(f, '__module__', '')).startswith('gift_fastai'):
                    patched.append(f'{cls.__module__}.{cname}.{k}')
    print(json.dumps(dict(mods=mods, commands=[m for m in sys.modules if m == 'gift_fastai.cli' or m.endswith('.__main__')],
                          patched=sorted(set(patched)))))
""")


def test_importing_the_library_loads_no_command_and_patches_nothing_in_fastai():
    p = subprocess.run([sys.executable, '-c', IMPORTS], env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert {'engine', 'protocols', 'assets', 'learner', 'experiments', 'continual', 'distributed', 'all'} <= set(res['mods'])
    assert res['commands'] == [] and res['patched'] == [], res
    # and the check can fail: fastai's DistributedDL given a method from our package is seen
    assert '\npatched = []' in IMPORTS
    probe = IMPORTS.replace("\npatched = []", "\nimport fastai.distributed as fd, gift_fastai.distributed as gd\n"
                            "fd.DistributedDL._broadcast = gd.DistilledDistributedDL._broadcast\npatched = []")
    p = subprocess.run([sys.executable, '-c', probe], env=ENV, capture_output=True, text=True, timeout=300)
    assert json.loads(p.stdout.strip().splitlines()[-1])['patched'] == ['fastai.distributed.DistributedDL._broadcast']
