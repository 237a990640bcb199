"The project itself: pinned stack, README example, star import."
import re, importlib.metadata as md
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_stack_matches_the_lock():
    "What is installed is what constraints.txt pins (the Makefile installs through it)."
    pins = dict(l.split('==') for l in (ROOT / 'constraints.txt').read_text().splitlines()
                if '==' in l and not l.startswith('#'))
    for name in ['torch', 'torchvision', 'fastai', 'timm', 'albumentations', 'rich', 'accelerate', 'nbdev']:
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert md.version(name) == pins[name], f"{name} {md.version(name)} installed, {pins[name]} pinned"
    assert pins['torch'] == '2.15.0' and pins['torchvision'] == '0.29.2' and pins['fastai'] == '2.8.12'


def test_readme_python_examples_run():
    "The python blocks of the README run as written, in order, as the cells of nbs/index.ipynb they come from."
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / 'README.md').read_text(), re.S)
    assert blocks, "the README has no python example"
    ns = {}
    for b in blocks:  # as written, but a long fit is cut to one epoch (the demo's own test runs the full job's code)
        exec(compile(re.sub(r'\.fit\(\d+\)', '.fit(1)', b), 'README.md', 'exec'), ns)


def test_readme_quick_start_is_the_make_targets():
    text = (ROOT / 'README.md').read_text()
    assert 'make test' in text and 'make demo' in text
    assert 'demo:' in (ROOT / 'Makefile').read_text()
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'make test' in ci


def test_star_import():
    ns = {}
    exec('from gift_fastai.all import *', ns)
    for n in ['get_loss', 'list_losses', 'GIFTLoss', 'smooth_labels', 'refine_soft_labels', 'LossEpoch', 'Registry',
              'InputError']:
        assert n in ns, n


def _scripts_by_hand(text):
    "pyproject's [project.scripts] table (`name = \"module:function\"` lines) without a TOML parser, for Python 3.10."
    table = re.search(r'^\[project\.scripts\][ \t]*\n(.*?)(?=^\[|\Z)', text, re.M | re.S)
    assert table, "pyproject.toml has no [project.scripts] table"
    return dict(re.findall(r'^[ \t]*"?([\w.-]+)"?[ \t]*=[ \t]*"([^"]*)"', table.group(1), re.M))


def _project_scripts(text):
    "[project.scripts] of a pyproject.toml: tomllib (Python 3.11+), else tomli if installed, else `_scripts_by_hand`."
    try: import tomllib
    except ImportError:
        try: import tomli as tomllib
        except ImportError: return _scripts_by_hand(text)
    want = tomllib.loads(text)['project']['scripts']
    assert _scripts_by_hand(text) == want, "the Python 3.10 fallback reads [project.scripts] differently from tomllib"
    return want


def test_console_scripts_are_installed():
    "Every command of pyproject's [project.scripts] is installed and loads its function."
    want = _project_scripts((ROOT / 'pyproject.toml').read_text())
    assert {'gift-eval', 'gift-distill', 'gift-ablate', 'gift-continual'} <= set(want)
    have = {e.name: e for e in md.entry_points(group='console_scripts')}
    for name, target in want.items():
        assert name in have, f"{name} is not installed: run `make install` (pyproject changed)"
        assert have[name].value == target and callable(have[name].load()), name
