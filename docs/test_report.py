"""The reports in a real browser (`make docs-check`, run by CI): `gift-eval --report`'s page, written from a short evaluation of the
embedded set with the hard-label and teacher baselines, and `gift-ablate --report`'s page of a small grid with the same baselines;
each opened from disk in Debian's Chromium (or $CHROMIUM) driven headless by Playwright: no console error, no page error, no
request leaves the file (nothing from the network), every image loads."""
import csv, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_site import chromium, FLAGS  # noqa: E402


def _written(tmp_path_factory, command, args:list) -> Path:
    "Run a command of the library with --report into a new folder; the page it wrote."
    out = tmp_path_factory.mktemp('report') / 'out'
    assert command(args + ['--epochs', '2', '--eval-every', '1', '--repeats', '2', '--baselines', 'hard,teacher', '--report', '--out', str(out)]) == 0
    return out / 'report.html'


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    from gift_fastai.cli import gift_eval
    return _written(tmp_path_factory, gift_eval, ['--loss', 'gift,kl'])


@pytest.fixture(scope='module')
def grid_report(tmp_path_factory):
    from gift_fastai.cli import gift_ablate
    return _written(tmp_path_factory, gift_ablate, ['--loss', 'gift,kl'])


def _open(page_file:Path) -> dict:
    "Open a page from disk; its console errors, requests, images (alt, loaded, width), h2 headings and table cells."
    from playwright.sync_api import sync_playwright
    errors, requests = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        page = b.new_page()
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.on('request', lambda r: requests.append(r.url))
        page.goto(page_file.as_uri()); page.wait_for_load_state('load')
        got = dict(imgs=page.evaluate("() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"),
                   heads=page.evaluate("() => Array.from(document.querySelectorAll('h2')).map(h => h.textContent)"),
                   cells=page.evaluate("() => Array.from(document.querySelectorAll('td')).map(t => t.textContent)"))
        b.close()
    assert not errors, errors
    assert all(u.startswith(('file:', 'data:')) for u in requests), [u for u in requests if not u.startswith(('file:', 'data:'))]
    assert all(ok and w > 0 for _, ok, w in got['imgs']), got['imgs']
    return got


def test_the_report_opens_offline_with_every_image(report):
    got = _open(report)
    assert len(got['imgs']) == 4, got['imgs']   # the curves and a confusion matrix per loss (gift, kl, hard ce)
    assert got['heads'] == ['Settings', 'Results', 'Baselines', 'Test accuracy over training', 'Confusion matrices and per-class accuracy',
                            'Storage'], got['heads']
    assert 'hard baseline: ce' in got['cells'] and 'teacher on the test set' in got['cells'], got['cells']
    rows = list(csv.DictReader(open(report.parent / 'results.csv')))
    assert len(rows) == 6


def test_the_grid_report_opens_offline_with_every_image(grid_report):
    got = _open(grid_report)
    # the loss bars, the curves, a confusion matrix per cell and baseline (gift, kl, hard ce; the teacher row trains nothing)
    assert [a for a, _, _ in got['imgs']][:2] == ['loss_bars', 'accuracy over epochs'] and len(got['imgs']) == 5, got['imgs']
    assert got['heads'] == ['Settings', 'Grid (final)', 'Every cell', 'Test accuracy over training', 'Confusion matrices and per-class accuracy',
                            'Storage'], got['heads']
    assert 'loss=ce · hard baseline' in got['cells'] and 'loss=teacher · teacher baseline' in got['cells'], got['cells']
    assert 'reference' in got['cells'], got['cells']   # gift: the native loss kl is paired with
    rows = list(csv.DictReader(open(grid_report.parent / 'results.csv')))
    assert len(rows) == 4 + 2 + 1
