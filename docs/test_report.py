"""`gift-eval --report`'s page in a real browser (`make docs-check`, run by CI): written from a short evaluation of the embedded
set with the hard-label and teacher baselines, opened from disk in Debian's Chromium (or $CHROMIUM) driven headless by
Playwright: no console error, no page error, no request leaves the file (nothing from the network), every image loads."""
import csv, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_site import chromium, FLAGS  # noqa: E402


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    from gift_fastai.cli import gift_eval
    out = tmp_path_factory.mktemp('report') / 'ev'
    assert gift_eval(['--loss', 'gift,kl', '--epochs', '2', '--eval-every', '1', '--repeats', '2', '--baselines', 'hard,teacher',
                      '--report', '--out', str(out)]) == 0
    return out / 'report.html'


def test_the_report_opens_offline_with_every_image(report):
    from playwright.sync_api import sync_playwright
    errors, requests = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        page = b.new_page()
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.on('request', lambda r: requests.append(r.url))
        page.goto(report.as_uri()); page.wait_for_load_state('load')
        imgs = page.evaluate("() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        heads = page.evaluate("() => Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        cells = page.evaluate("() => Array.from(document.querySelectorAll('td')).map(t => t.textContent)")
        b.close()
    assert not errors, errors
    assert all(u.startswith(('file:', 'data:')) for u in requests), [u for u in requests if not u.startswith(('file:', 'data:'))]
    assert len(imgs) == 4 and all(ok and w > 0 for _, ok, w in imgs), imgs   # the curves and a confusion matrix per loss (gift, kl, hard ce)
    assert heads == ['Settings', 'Results', 'Baselines', 'Test accuracy over training', 'Confusion matrices and per-class accuracy', 'Storage'], heads
    assert 'hard baseline: ce' in cells and 'teacher on the test set' in cells, cells
    rows = list(csv.DictReader(open(report.parent / 'results.csv')))
    assert len(rows) == 6
