"""Run notebooks in a real Jupyter kernel and save their outputs in place (`make nbs`).

The documentation shows the outputs committed in the notebooks (nbdev's way), so after changing a
notebook run it here, then `nbdev-clean`. A real kernel (nbclient), not nbdev-test's shell, so that
what is saved is what a Jupyter user sees: fastai's HTML progress tables, plots as PNG.

Usage: python tools/run_nbs.py [NOTEBOOK ...]   (default: every notebook in nbs/)"""
import os, re, sys, time, uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

def run(nb_path:Path, timeout:int=900) -> float:
    t0 = time.time()
    nb = nbformat.read(nb_path, as_version=4)
    for c in nb.cells: c.setdefault('id', uuid.uuid4().hex[:8])  # cells added by hand may lack the id nbformat 4.5 wants
    NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(nb_path.parent)}}).execute()
    for c in nb.cells:  # a warning raised by a cell names the kernel's temporary file of that cell: keep only the line
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream': o['text'] = re.sub(r'/tmp/ipykernel_\d+/\d+\.py:(\d+)', r'<cell>:\1', o['text'])
    nbformat.write(nb, nb_path)
    return time.time() - t0

# Import-time and environment warnings that would print this machine's paths into the saved outputs: fastai's two at
# import (torch.jit.script's deprecation, pandas' mode.chained_assignment), tqdm's and rich's requests for ipywidgets
# (the text fallbacks are what the docs want).
QUIET = ["ignore:`torch.jit.script` is deprecated:FutureWarning", "ignore:The 'mode.chained_assignment' option is deprecated:Warning",
         "ignore:IProgress not found:Warning", 'ignore:install "ipywidgets" for Jupyter support:UserWarning']

def main():
    os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
    os.environ['PYTHONWARNINGS'] = ','.join(filter(None, [os.environ.get('PYTHONWARNINGS'), *QUIET]))
    nbs = [Path(a).resolve() for a in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    for p in nbs:
        if not p.exists(): sys.exit(f'no such notebook: {p}')
    for p in nbs:
        print(f'{p.name}: {run(p):.0f} s', flush=True)

if __name__ == '__main__': main()
