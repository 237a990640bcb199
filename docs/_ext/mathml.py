"""Render math to MathML at build time (latex2mathml), so pages need no JavaScript, no CDN and no network.

Chromium, Firefox and Safari render MathML Core natively. A formula that latex2mathml cannot convert
fails the build with the formula in the message (`make docs` runs Sphinx with warnings as errors)."""
from docutils import nodes
from latex2mathml.converter import convert
from sphinx.util import logging

logger = logging.getLogger(__name__)

def _mathml(self, node, latex:str, display:str) -> str:
    try: return convert(latex, display=display)
    except Exception as e:  # keep the source visible, and say where it is
        logger.warning(f'cannot render math {latex!r} as MathML: {e}', location=node)
        return f'<code class="math-error">{self.encode(latex)}</code>'

def visit_math(self, node):
    self.body.append(f'<span class="math notranslate">{_mathml(self, node, node.astext(), "inline")}</span>')
    raise nodes.SkipNode

def visit_displaymath(self, node):
    latex = node.astext()
    parts = [p for p in latex.split('\n\n') if p.strip()] if not node.get('nowrap') else [latex]
    html = ''.join(_mathml(self, node, p, 'block') for p in parts)
    number = ''
    if node.get('number'): number = f'<span class="eqno">({node["number"]})</span>'
    self.body.append(f'<div class="math notranslate">{number}{html}</div>')
    raise nodes.SkipNode

def setup(app):
    app.add_html_math_renderer('mathml', (visit_math, None), (visit_displaymath, None))
    return dict(parallel_read_safe=True, parallel_write_safe=True)
