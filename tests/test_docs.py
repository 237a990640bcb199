"Every exported name is documented: a docstring for what can carry one, prose in its notebook for constants."
import importlib, inspect, json, re
from types import FunctionType
from pathlib import Path

from fastai.callback.core import _events

ROOT = Path(__file__).resolve().parents[1]

def module_notebooks() -> dict:
    "{module name: notebook path} from the `default_exp` of every notebook."
    out = {}
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text())
        if m and m[1] != 'all': out[f'gift_fastai.{m[1]}'] = nb  # `all` only re-exports
    return out

def _own_doc(obj) -> str:
    "The object's own docstring (not one inherited from a base class)."
    d = obj.__dict__.get('__doc__') if inspect.isclass(obj) else getattr(obj, '__doc__', None)
    return (d or '').strip()

def _undocumented_methods(cls) -> list:
    "Public methods and properties defined by `cls` with no docstring, their own or the one of the method they override."
    out = []
    for k, v in cls.__dict__.items():
        if k.startswith('_') or k in _events: continue  # fastai's callback events are documented by fastai
        if isinstance(v, property): doc = v.__doc__
        elif isinstance(v, (classmethod, staticmethod, FunctionType)): doc = inspect.getdoc(getattr(cls, k))
        else: continue
        if not (doc or '').strip(): out.append(k)
    return out

def undocumented() -> list:
    missing = []
    for modname, nb in module_notebooks().items():
        mod = importlib.import_module(modname)
        prose = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (callable(obj) or inspect.ismodule(obj)):  # a constant: it needs a word in its notebook
                if f'`{name}`' not in prose: missing.append(f'{modname}.{name} (constant, not described in {nb.name})')
                continue
            if not _own_doc(obj): missing.append(f'{modname}.{name}')
            if inspect.isclass(obj) and obj.__module__.startswith('gift_fastai'):
                missing += [f'{modname}.{name}.{k}' for k in _undocumented_methods(obj)]
    return missing

def test_modules_found():
    mods = module_notebooks()
    assert {'gift_fastai.losses', 'gift_fastai.learner', 'gift_fastai.continual'} <= set(mods), mods

def test_every_exported_name_is_documented():
    missing = undocumented()
    assert not missing, f'{len(missing)} exported names without documentation:\n' + '\n'.join(missing)


# The offline site builder (tools/build_docs.py) and its Sphinx extensions (docs/_ext): the pieces, on hand-made inputs.
import sys
sys.path[:0] = [str(ROOT / 'tools'), str(ROOT / 'docs' / '_ext')]
import pytest
import build_docs as bd
from anchors import pandoc_id

SITE = 'https://gift-fastai.github.io/gift-fastai/'

def test_page_names_follow_nbdev():
    assert bd.page_name('01_losses.ipynb', {}) == 'losses'
    assert bd.page_name('index.ipynb', {}) == 'index'
    assert bd.page_name('20_tutorial_evaluate.ipynb', {}) == 'tutorial_evaluate'
    assert bd.page_name('05_data.ipynb', {'output-file': 'data-api.html'}) == 'data-api'

def test_links_become_relative():
    md = (f'[`get_loss`]({SITE}losses.html#get_loss), [the data page](05_data.ipynb), '
          f'[a section](./06_callbacks.ipynb#refine) and [fastai](https://docs.fast.ai/learner.html#learner)')
    assert bd.fix_links(md, SITE, {'05_data.ipynb': 'data', '06_callbacks.ipynb': 'callbacks'}) == (
        '[`get_loss`](losses.html#get_loss), [the data page](data.html), '
        '[a section](./callbacks.html#refine) and [fastai](https://docs.fast.ai/learner.html#learner)')

def test_show_doc_markdown_is_cleaned():
    md = ('---\n\n[source](https://github.com/x/y.py#L3){target="_blank" style="float:right; font-size:smaller"}\n\n'
          '### GIFTLoss\n\n```python\ndef GIFTLoss(\n    gamma:float=0.1, # weight\n)->__main__.SoftLabelLoss:\n```\n\n'
          '### get_loss\n\n```python\ndef get_loss(\n    name, **kwargs\n)->__main__.SoftLabelLoss:\n```')
    assert bd.clean_show_doc(md) == (
        '[source](https://github.com/x/y.py#L3){.doc-source}\n\n'
        '### GIFTLoss\n\n```python\nclass GIFTLoss(\n    gamma:float=0.1, # weight\n):\n```\n\n'
        '### get_loss\n\n```python\ndef get_loss(\n    name, **kwargs\n)->SoftLabelLoss:\n```')

def test_quarto_directives_become_tags():
    cell = lambda src: dict(cell_type='code', metadata={}, source=src, outputs=[], execution_count=1)
    assert bd.stage_cell(cell('#| include: false\nx = 1'), SITE, {}) is None
    c = bd.stage_cell(cell('#| echo: false\nplot()'), SITE, {})
    assert (c['source'], c['metadata']['tags']) == ('plot()', ['remove-input'])
    sd = cell('#| echo: false\n#| output: asis\nshow_doc(f)')
    sd['outputs'] = [dict(output_type='execute_result', data={'text/markdown': '---\n\n### f\n\nSee [`g`](' + SITE + 'core.html#g)'})]
    assert bd.stage_cell(sd, SITE, {}) == dict(cell_type='markdown', metadata={}, source='### f\n\nSee [`g`](core.html#g)')

def test_pandoc_ids():  # Quarto's ids, which nbdev's links point at
    assert [pandoc_id(t) for t in ['get_loss', 'AugOp.apply', 'The registry', "GIFT's label refinement"]] == \
           ['get_loss', 'augop.apply', 'the-registry', 'gifts-label-refinement']

def test_sidebar_must_list_every_notebook(tmp_path, monkeypatch):
    sections = bd.sidebar(ROOT / 'nbs' / 'sidebar.yml')
    bd.check_sidebar(sections)  # the committed one is complete
    with pytest.raises(SystemExit, match=r"notebooks missing from nbs/sidebar.yml.*01_losses.ipynb"):
        bd.check_sidebar([(t, [n for n in nbs if n != '01_losses.ipynb']) for t, nbs in sections])
    with pytest.raises(SystemExit, match=r"lists notebooks that do not exist: \['99_nope.ipynb'\]"):
        bd.check_sidebar(sections + [('More', ['99_nope.ipynb'])])

def test_math_renders_to_mathml():
    from latex2mathml.converter import convert
    m = convert(r'1 - \cos(z, \gamma\hat s + (1-\gamma)\hat t)')
    assert m.startswith('<math') and '<mover' in m and '&#x003B3;' in m  # γ with hats, not TeX text

def test_saved_outputs_hold_no_machine_paths():
    "The notebooks' committed outputs are the docs: nothing of the machine that ran them (`make nbs` keeps them clean)."
    bad = []
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            for o in c.get('outputs', []):
                text = json.dumps(o)
                if any(s in text for s in (str(ROOT), '/site-packages/', '/tmp/', '/root/', '/home/')): bad.append(f'{nb.name} cell {i}')
    assert not bad, f'outputs with machine paths (re-run them with `make nbs NBS=...`): {bad}'

def test_readme_gets_markdown_tables():
    html = '```html\n<div><table class="x"><thead><tr><th>epoch</th><th>acc</th></tr></thead>\n<tbody><tr><td>0</td><td>0.5</td></tr>' \
           '<tr><td>1</td><td><b>0.7</b></td></tr></tbody></table></div>\n```'
    assert bd._html_tables_to_md(html) == '| epoch | acc |\n|---|---|\n| 0 | 0.5 |\n| 1 | 0.7 |'
    assert bd._html_tables_to_md('plain *markdown*') == 'plain *markdown*'

def test_readme_is_index_notebook():
    "README.md is what `make export` writes from nbs/index.ipynb (make check fails on a stale one too)."
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        assert bd.readme(out=Path(d) / 'README.md') == (ROOT / 'README.md').read_text()

def test_readme_shows_only_the_output_of_echo_false_cells(tmp_path):
    "A `#| echo: false` cell gives the README its output without its code; `#| hide` cells give nothing."
    out = lambda text: [dict(output_type='display_data', data={'text/markdown': text}, metadata={})]
    cells = [dict(cell_type='code', source='#| hide\nx = 1', outputs=out('HIDDEN')),
             dict(cell_type='code', source='#| echo: false\nperf_tables()', outputs=out('| a |\n|---|\n| 1 |')),
             dict(cell_type='code', source='shown()', outputs=out('OUT'))]
    nb = tmp_path / 'index.ipynb'; nb.write_text(json.dumps(dict(cells=cells)))
    text = bd.readme(nb, out=tmp_path / 'README.md')
    assert '| a |\n|---|\n| 1 |' in text and 'perf_tables' not in text and 'HIDDEN' not in text and 'x = 1' not in text
    assert '```python\nshown()\n```' in text and 'OUT' in text


def test_saved_help_of_the_evaluate_tutorial_is_the_commands_help(monkeypatch):
    "The tutorial shows `gift-eval --help` as its saved output: it must be what the command prints today (rerun the notebook)."
    from gift_fastai.cli import eval_parser
    monkeypatch.setenv('COLUMNS', '80')   # argparse wraps at the terminal's width; the kernel that saved it had none: 80
    nb = json.loads((ROOT / 'nbs' / '20_tutorial_evaluate.ipynb').read_text())
    cell = next(c for c in nb['cells'] if 'eval_parser().format_help()' in ''.join(c['source']))
    saved = ''.join(o.get('text', '') if isinstance(o.get('text'), str) else ''.join(o.get('text', [])) for o in cell['outputs'])
    assert saved.strip() == eval_parser().format_help().strip(), "nbs/20_tutorial_evaluate.ipynb shows a stale --help: run it again"
