"""Give every section the anchor that nbdev's links use, besides docutils' own.

nbdev links a name to `page.html#<pandoc id>` (Quarto's ids: lower case, only letters, digits, `_`,
`-` and `.`, spaces to `-`), e.g. `learner.html#distilled_learner` or `augment.html#augop.apply`.
docutils would make those `distilled-learner` and `augop-apply`: both ids are kept."""
import re
from docutils import nodes

def pandoc_id(title:str) -> str:
    s = re.sub(r'[^\w\s.-]', '', title.strip().lower())
    s = re.sub(r'\s+', '-', s)
    return s.lstrip('0123456789.-_') or 'section'

def add_ids(app, doctree, docname):
    for sec in doctree.findall(lambda n: isinstance(n, (nodes.section, nodes.rubric))):
        title = sec if isinstance(sec, nodes.rubric) else sec.children[0] if sec.children else None
        if not isinstance(title, (nodes.title, nodes.rubric)): continue
        pid = pandoc_id(title.astext())
        if pid not in sec['ids'] and pid not in doctree.ids:
            sec['ids'].append(pid); doctree.ids[pid] = sec

def setup(app):
    app.connect('doctree-resolved', add_ids)
    return dict(parallel_read_safe=True, parallel_write_safe=True)
