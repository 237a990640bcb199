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
