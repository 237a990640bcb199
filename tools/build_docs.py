"""Build the documentation site offline into `_docs/` (`make docs`).

1. nbdev's processor (`nbdev-proc-nbs`, without its Quarto installer) writes the processed notebooks
   to `_proc/`: front matter, `show_doc` for every exported name, directives, doc links.
2. They are staged into `_docs_src/` under nbdev's page names (`01_losses.ipynb` -> `losses`), Quarto's
   cell directives turned into MyST-NB tags, links to the site made relative, and the sidebar of
   `nbs/sidebar.yml` (the same one Quarto uses) turned into the toctree.
3. Sphinx with MyST-NB and the Furo theme renders them (`docs/conf.py`), warnings as errors.

Usage: python tools/build_docs.py [--out _docs] [--no-proc] [--keep-going]
       python tools/build_docs.py readme     # README.md from nbs/index.ipynb"""
import argparse, functools, json, re, shutil, subprocess, sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS, PROC, SRC = ROOT / 'nbs', ROOT / '_proc', ROOT / '_docs_src'
IMAGES = {'.png', '.svg', '.jpg', '.jpeg', '.gif', '.webp'}
_DIRECTIVE = re.compile(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$')

def run_nbdev_proc(n_workers:int=2) -> Path:
    "nbdev-proc-nbs, minus its attempt to install Quarto with sudo."
    import nbdev.quarto as q
    q._ensure_quarto = lambda: None
    return q._pre_docs(n_workers=n_workers)[0]

def sidebar(path:Path=NBS / 'sidebar.yml') -> list:
    "[(section or None, [notebook, ...]), ...] from Quarto's sidebar file."
    items = yaml.safe_load(path.read_text())['website']['sidebar']['contents']
    return [(None, [o]) if isinstance(o, str) else (o['section'], list(o.get('contents') or [])) for o in items]

def check_sidebar(sections:list):
    listed = [nb for _, nbs in sections for nb in nbs]
    have = sorted(p.name for p in NBS.glob('*.ipynb'))
    missing = [nb for nb in listed if nb not in have]
    unlisted = [nb for nb in have if nb not in listed]
    dup = sorted({nb for nb in listed if listed.count(nb) > 1})
    msgs = ([f'nbs/sidebar.yml lists notebooks that do not exist: {missing}'] if missing else []) + \
           ([f'notebooks missing from nbs/sidebar.yml (every notebook is a page): {unlisted}'] if unlisted else []) + \
           ([f'nbs/sidebar.yml lists {dup} twice'] if dup else [])
    if msgs: sys.exit('\n'.join(msgs) + '\nfix nbs/sidebar.yml')

def front_matter(nb:dict) -> dict:
    c = nb['cells'][0] if nb['cells'] else None
    if c and c['cell_type'] == 'raw':
        s = ''.join(c['source']).strip()
        if s.startswith('---'): return yaml.safe_load(s.strip('-\n')) or {}
    return {}

def page_name(nb_name:str, fm:dict) -> str:
    "nbdev's page name: the front matter's `output-file`, else the file name without its number."
    return Path(fm.get('output-file') or re.sub(r'^\d+_', '', nb_name)).stem

def nb_links(md:str, prefix:str='', pages:dict|None=None) -> str:
    "Links to notebooks (`[x](05_data.ipynb#a)`) as links to their pages (`[x](<prefix>data.html#a)`)."
    def page(m): return (pages or {}).get(m[2] + '.ipynb') or page_name(m[2], {})
    return re.sub(r'(\]\((?:\./)?)([\w-]+)\.ipynb(#[^)\s]*)?\)', lambda m: f'{m[1]}{prefix}{page(m)}.html{m[3] or ""})', md)

def fix_links(md:str, site:str, pages:dict) -> str:
    "Links to the published site and to notebooks become relative links to the built pages."
    return nb_links(md.replace(site, ''), '', pages)

@functools.lru_cache(None)
def library_classes() -> frozenset:
    "Names of the classes the library exports."
    import importlib, inspect
    from gift_fastai._modidx import d
    mods = [importlib.import_module(m) for m in d['syms']]
    return frozenset(n for m in mods for n in getattr(m, '__all__', []) if inspect.isclass(getattr(m, n, None)))

def clean_show_doc(md:str) -> str:
    "show_doc's markdown, for MyST: Pandoc's link attributes become a class, names defined in a notebook lose `__main__.`,\n    a class's signature reads `class Name(`, not `def Name(`."
    md = re.sub(r'^\s*---\s*\n', '', md)  # a leading rule would be read as front matter
    md = re.sub(r'(\[source\]\([^)]*\))\{[^}]*\}', r'\1{.doc-source}', md)
    md = re.sub(r'(```python\n)def (\w+)\(', lambda m: f'{m[1]}{"class" if m[2] in library_classes() else "def"} {m[2]}(', md)
    md = re.sub(r'(```python\nclass \w+\((?:.*?\n)??\))->[^\n]*:', r'\1:', md, flags=re.S)  # no return type on a class
    return md.replace('__main__.', '')

def _src(x): return ''.join(x) if isinstance(x, list) else x

def stage_cell(cell:dict, site:str, pages:dict):
    "One processed cell as MyST-NB reads it, or None to drop it."
    src = _src(cell['source'])
    if cell['cell_type'] == 'markdown':
        cell['source'] = fix_links(src, site, pages); return cell
    if cell['cell_type'] != 'code': return None
    lines, tags, opts = src.split('\n'), set(cell.get('metadata', {}).get('tags', [])), {}
    while lines and (m := _DIRECTIVE.match(lines[0])):
        opts[m[1].lower()] = m[2].strip().lower(); lines.pop(0)
    if opts.get('include') == 'false': return None
    if opts.get('output') == 'asis' and opts.get('echo') == 'false':  # show_doc: its markdown becomes the page's own
        md = [_src(o['data']['text/markdown']) for o in cell.get('outputs', []) if 'text/markdown' in o.get('data', {})]
        return dict(cell_type='markdown', metadata={}, source=clean_show_doc(fix_links('\n\n'.join(md), site, pages))) if md else None
    if opts.get('echo') == 'false': tags.add('remove-input')
    if opts.get('output') == 'false': tags.add('remove-output')
    cell['source'] = '\n'.join(lines)
    for o in cell.get('outputs', []):
        md = o.get('data', {}).get('text/markdown')
        if md is None: continue
        o['data']['text/markdown'] = clean_show_doc(fix_links(_src(md), site, pages))
    if not cell['source'].strip() and not cell.get('outputs'): return None
    cell['metadata'] = dict(tags=sorted(tags))  # nbdev's timing metadata is not valid nbformat
    return cell

def toctree(sections:list, pages:dict) -> str:
    out = []
    for title, nbs in sections:
        if title is None: continue
        entries = '\n'.join(pages[nb] for nb in nbs)
        out.append(f'```{{toctree}}\n:hidden:\n:caption: {title}\n\n{entries}\n```')
    return '\n\n'.join(out)

def stage(proc:Path=PROC, dest:Path=SRC) -> dict:
    "Write the MyST-NB sources; returns {notebook: page}."
    from nbdev.config import get_config
    cfg = get_config()
    site = f'{cfg.doc_host}{cfg.doc_baseurl}'.rstrip('/') + '/'
    sections = sidebar(); check_sidebar(sections)
    nbs = {p.name: json.loads(p.read_text()) for p in sorted(proc.glob('*.ipynb'))}
    unprocessed = [nb for _, l in sections for nb in l if nb not in nbs]
    if unprocessed: sys.exit(f'nbdev did not process {unprocessed}: run without --no-proc')
    fms = {k: front_matter(nb) for k, nb in nbs.items()}
    pages = {k: page_name(k, fms[k]) for k in nbs}
    if len(set(pages.values())) != len(pages): sys.exit(f'two notebooks give the same page name: {pages}')
    if dest.exists(): shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for k, nb in nbs.items():
        fm = fms[k]
        if not fm.get('title'): sys.exit(f'nbs/{k} has no title: start it with a markdown cell "# Title" and "> description"')
        head = f'# {fm["title"]}\n'
        if fm.get('description'): head += f'\n```{{container}} lead\n{fm["description"]}\n```\n'
        cells = [dict(cell_type='markdown', metadata={}, source=head)]
        cells += [c for c in (stage_cell(c, site, pages) for c in nb['cells'][1:]) if c is not None]
        if pages[k] == 'index': cells.append(dict(cell_type='markdown', metadata={}, source=toctree(sections, pages)))
        keys = dict(markdown={'cell_type', 'metadata', 'source'}, code={'cell_type', 'metadata', 'source', 'outputs', 'execution_count'})
        cells = [{k: v for k, v in c.items() if k in keys[c['cell_type']]} for c in cells]  # nbdev adds keys nbformat refuses
        for i, c in enumerate(cells): c['id'] = f'c{i}'
        for c in cells:
            if c['cell_type'] == 'code': c.setdefault('outputs', []); c.setdefault('execution_count', None)
        nb['cells'], nb['nbformat'], nb['nbformat_minor'] = cells, 4, 5
        nb.setdefault('metadata', {}).setdefault('kernelspec', dict(name='python3', display_name='Python 3', language='python'))
        (dest / f'{pages[k]}.ipynb').write_text(json.dumps(nb, indent=1))
    for f in NBS.rglob('*'):  # images the notebooks' markdown refers to (e.g. nbs/repro/*/plots)
        if f.suffix.lower() in IMAGES and not any(p.startswith(('.', '_')) for p in f.relative_to(NBS).parts):
            (dest / f.relative_to(NBS)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / f.relative_to(NBS))
    return pages

def _html_tables_to_md(md:str) -> str:
    "A fenced html block holding a plain table (fastprogress's epoch table) as a markdown table; anything else unchanged."
    m = re.fullmatch(r'```html\s*(.*?)\s*```', md, re.S)
    if not m or '<table' not in m[1]: return md
    rows = [[re.sub(r'<[^>]+>', '', c).strip() for c in re.findall(r'<t[hd][^>]*>(.*?)</t[hd]>', r, re.S)]
            for r in re.findall(r'<tr[^>]*>(.*?)</tr>', m[1], re.S)]
    rows = [r for r in rows if r]
    if not rows: return md
    return '\n'.join(['| ' + ' | '.join(rows[0]) + ' |', '|' + '---|' * len(rows[0])] + ['| ' + ' | '.join(r) + ' |' for r in rows[1:]])

def readme(nb:Path=NBS / 'index.ipynb', out:Path=ROOT / 'README.md') -> str:
    "README.md from index.ipynb (what `nbdev-readme` does with Quarto): links to pages go to the published site."
    from nbdev.config import get_config
    cfg = get_config()
    site = f'{cfg.doc_host}{cfg.doc_baseurl}'.rstrip('/') + '/'
    cells, parts = json.loads(nb.read_text())['cells'], []
    for c in cells:
        src = _src(c['source']).strip('\n')
        if c['cell_type'] == 'markdown':
            src = nb_links(src, site)
            src = re.sub(r'(\]\()(images/)', r'\1nbs/\2', src)  # images live in nbs/
            parts.append(src)
        elif c['cell_type'] == 'code' and src and (not src.startswith('#|') or re.search(r'^#\|\s*echo:\s*false', src, re.M)):
            if not src.startswith('#|'): parts.append(f'```python\n{src}\n```')  # `#| echo: false`: its output only
            for o in c.get('outputs', []):
                data = o.get('data', {})
                if 'text/markdown' in data: parts.append(_html_tables_to_md(_src(data['text/markdown']).strip())); continue  # fastai's epochs
                txt = _src(o.get('text', '')) if o.get('output_type') == 'stream' else _src(data.get('text/plain', ''))
                if txt.strip() and not txt.lstrip().startswith('<'): parts.append(f'```text\n{txt.rstrip()}\n```')
    text = '<!-- WARNING: written from nbs/index.ipynb by `make export` (tools/build_docs.py readme); edit the notebook -->\n\n' + \
           '\n\n'.join(parts) + '\n'
    out.write_text(text)
    return text

def main():
    if sys.argv[1:2] == ['readme']: readme(); print('wrote README.md from nbs/index.ipynb'); return
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / '_docs'), help='output folder (default: _docs)')
    ap.add_argument('--no-proc', action='store_true', help='reuse _proc/ (skip nbdev-proc-nbs)')
    ap.add_argument('--keep-going', action='store_true', help='report every warning, do not stop at the first')
    a = ap.parse_args()
    if not a.no_proc: run_nbdev_proc()
    pages = stage()
    # Sphinx writes into _docs_src/.build/ (MyST-NB puts its jupyter_execute/ beside the output folder), then the site is copied
    build = SRC / '.build'
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-W', '-c', str(ROOT / 'docs'), '-d', str(build / 'doctrees'),
           str(SRC), str(build / 'html')] + (['--keep-going'] if a.keep_going else [])
    r = subprocess.run(cmd, cwd=ROOT)
    if r.returncode: sys.exit(f'sphinx-build failed ({r.returncode})')
    out = Path(a.out)
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(build / 'html', out)
    print(f'built {len(pages)} pages into {Path(a.out).relative_to(ROOT) if Path(a.out).is_relative_to(ROOT) else a.out}/index.html')

if __name__ == '__main__': main()
