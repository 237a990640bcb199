"""The built documentation site in a real browser (`make docs-check`, run by CI).

Builds nothing: it checks `_docs/` (or $GIFT_DOCS_DIR), served on 127.0.0.1, with Debian's Chromium
(or $CHROMIUM) driven headless by Playwright:
- every page loads with no console error, no page error, no failed or 4xx/5xx request;
- every page of nbs/sidebar.yml is in the sidebar, and every internal link resolves, fragment included;
- every image loads;
- each API page shows the signature of each public name of its module (`__all__`);
- math is rendered (MathML), not left as TeX;
- search finds a name;
- screenshots of the index and of the losses page are saved in `_docs/screenshots/` for review."""
import functools, http.server, importlib, os, re, shutil, socketserver, sys, threading, urllib.parse
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('GIFT_DOCS_DIR', ROOT / '_docs'))
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
sys.path.insert(0, str(ROOT / 'tools'))
sys.path.insert(0, str(ROOT / 'docs' / '_ext'))
from build_docs import sidebar, page_name  # noqa: E402
from anchors import pandoc_id  # noqa: E402

def chromium() -> str:
    exe = os.environ.get('CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
    if not exe: pytest.fail('no Chromium: install Debian\'s (`apt-get install chromium`, as .ci/run does) or set $CHROMIUM')
    return exe

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def site():
    if not (SITE / 'index.html').exists(): pytest.fail(f'no site in {SITE}: run `make docs` first')
    handler = functools.partial(_Quiet, directory=str(SITE))
    srv = socketserver.ThreadingTCPServer(('127.0.0.1', 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        yield b
        b.close()

def pages_of_sidebar() -> dict:
    "{notebook: page name} in sidebar order."
    return {nb: page_name(nb, {}) for _, nbs in sidebar(ROOT / 'nbs' / 'sidebar.yml') for nb in nbs}

_JS_PAGE = """() => ({
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  sidebar: Array.from(document.querySelectorAll('.sidebar-tree a.reference, a.sidebar-brand')).map(a => a.href),
  images: Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0]),
  maths: document.querySelectorAll('article math').length,
  text: document.querySelector('article') ? document.querySelector('article').innerText : '',
  prose: (() => { const a = document.querySelector('article'); if (!a) return '';
                  const c = a.cloneNode(true); c.querySelectorAll('pre, code').forEach(e => e.remove()); return c.textContent; })(),
})"""

@pytest.fixture(scope='module')
def crawl(site, browser):
    "Visit every HTML page of the site; record what each shows and every error."
    pages = sorted(p.relative_to(SITE).as_posix() for p in SITE.glob('*.html'))
    ctx = browser.new_context(viewport=dict(width=1280, height=900))
    page = ctx.new_page()
    errors, seen = [], {}
    page.on('console', lambda m: m.type == 'error' and errors.append(f'{page.url}: console: {m.text}'))
    page.on('pageerror', lambda e: errors.append(f'{page.url}: page error: {e}'))
    page.on('requestfailed', lambda r: errors.append(f'{page.url}: request failed: {r.url} ({r.failure})'))
    page.on('response', lambda r: r.status >= 400 and errors.append(f'{page.url}: HTTP {r.status} for {r.url}'))
    for p in pages:
        page.goto(site + p, wait_until='load')
        page.wait_for_load_state('networkidle')
        seen[p] = page.evaluate(_JS_PAGE)
    yield dict(site=site, pages=pages, seen=seen, errors=errors, ctx=ctx)
    ctx.close()

def test_every_page_loads_cleanly(crawl):
    assert len(crawl['pages']) >= len(pages_of_sidebar()), crawl['pages']
    assert not crawl['errors'], '\n'.join(crawl['errors'])

def test_sidebar_lists_every_page(crawl):
    want = [f'{crawl["site"]}{p}.html' for p in pages_of_sidebar().values()]
    for p, info in crawl['seen'].items():
        if p in ('genindex.html', 'search.html'): continue
        got = [u.split('#')[0] for u in info['sidebar']]
        got += [crawl['site'] + 'index.html' for u in got if u == crawl['site']]  # the title links to the root
        missing = [w for w in want if w not in got]
        assert not missing, f'{p}: sidebar lacks {missing}'

def test_internal_links_resolve(crawl):
    site, seen, bad, n = crawl['site'], crawl['seen'], [], 0
    assets = {}
    for p, info in seen.items():
        for href in info['links']:
            if not href.startswith(site): continue  # another site (fastai's docs, GitHub): not reachable here
            n += 1
            url, _, frag = href.partition('#')
            rel = urllib.parse.unquote(url[len(site):]) or 'index.html'
            if rel in seen:
                if frag and urllib.parse.unquote(frag) not in seen[rel]['ids']: bad.append(f'{p}: {href}: no #{frag} on {rel}')
            elif rel.endswith('/') or rel.endswith('.html'): bad.append(f'{p}: {href}: no such page')
            else:
                if rel not in assets: assets[rel] = (SITE / rel).is_file()
                if not assets[rel]: bad.append(f'{p}: {href}: no such file')
    assert n > 100, f'only {n} internal links: is the sidebar there?'
    assert not bad, '\n'.join(bad)

def test_every_image_loads(crawl):
    bad = [f'{p}: {src}' for p, info in crawl['seen'].items() for src, ok in info['images'] if not ok]
    assert not bad, '\n'.join(bad)
    n = sum(len(info['images']) for info in crawl['seen'].values())
    assert n >= 10, f'only {n} images on the whole site: are the notebooks\' plots committed?'

def _api_pages() -> dict:
    "{page: module} for every notebook that exports a module."
    out = {}
    for nb, page in pages_of_sidebar().items():
        src = (ROOT / 'nbs' / nb).read_text()
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', src)
        if m and m[1] != 'all': out[page] = f'gift_fastai.{m[1]}'  # `all` re-exports the others
    return out

def test_api_pages_show_signatures(crawl):
    bad, checked = [], 0
    for page, modname in _api_pages().items():
        mod = importlib.import_module(modname)
        info = crawl['seen'][f'{page}.html']
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name)
            if not callable(obj):  # constants: documented in the prose
                if name not in info['text']: bad.append(f'{page}: {name} is not mentioned')
                continue
            checked += 1
            if pandoc_id(name) not in info['ids']: bad.append(f'{page}: no section for {name}'); continue
            if not re.search(rf'\b(def|class) {re.escape(name)}\(', info['text']): bad.append(f'{page}: no signature for {name}')
    assert checked > 50, checked
    assert not bad, '\n'.join(bad)

def test_math_is_rendered(crawl):
    seen = crawl['seen']
    assert seen['losses.html']['maths'] > 20, seen['losses.html']['maths']
    raw = [p for p, info in seen.items() if re.search(r'\$[^$\n]*\\[a-zA-Z]+', info['prose'])]  # code may show TeX
    assert not raw, f'TeX left unrendered on {raw}'

def test_no_machine_paths(crawl):
    "Outputs committed or executed on a developer's machine must not show its paths."
    leaks = [p for p, info in crawl['seen'].items() if str(ROOT) in info['text'] or '/site-packages/' in info['text']]
    assert not leaks, f'absolute paths of the build machine on {leaks}: re-run those notebooks with `make nbs`'

def test_search_finds_a_name(crawl):
    page = crawl['ctx'].new_page()
    page.goto(crawl['site'] + 'search.html?q=distilled_learner', wait_until='load')
    page.wait_for_selector('#search-results li', timeout=20_000)
    hits = page.eval_on_selector_all('#search-results li a', 'as => as.map(a => a.href)')
    assert any('learner.html' in h for h in hits), hits
    page.close()

def test_screenshots(crawl, browser):
    out = SITE / 'screenshots'; out.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport=dict(width=1280, height=900))  # fresh: no search highlight from other tests
    page = ctx.new_page()
    for name in ['index', 'losses']:
        page.goto(f'{crawl["site"]}{name}.html', wait_until='networkidle')
        page.screenshot(path=str(out / f'{name}.png'), full_page=name == 'index')
        assert (out / f'{name}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    ctx.close()
