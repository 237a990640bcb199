"""Sphinx configuration of the offline documentation site (see README: "The documentation site").

`tools/build_docs.py` stages nbdev's processed notebooks into `_docs_src/` and runs Sphinx with
this configuration (`-c docs`); nothing is executed here: the notebooks' committed outputs are shown."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent / '_ext'))
from gift_fastai import __version__

project = 'gift-fastai'
author = 'gift-fastai developers'
copyright = '2026, gift-fastai developers'
release = version = __version__

extensions = ['myst_nb', 'mathml', 'anchors']
html_math_renderer = 'mathml'
exclude_patterns = ['.build', '**.ipynb_checkpoints']  # .build: the output (tools/build_docs.py)
root_doc = 'index'

# MyST-NB: render the notebooks as committed (nbdev's way), markdown outputs (show_doc) as MyST.
nb_execution_mode = 'off'
nb_render_markdown_format = 'myst'
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'colon_fence', 'attrs_inline']
myst_dmath_double_inline = True
# Links were already turned into page.html#anchor by the staging step (nbdev's own link targets).
myst_all_links_external = True
suppress_warnings = ['myst.header']  # show_doc's ### headings follow ## prose headings freely

html_theme = 'furo'
html_title = f'gift-fastai {version}'
html_static_path = ['_static']
html_css_files = ['custom.css']
html_copy_source = False
html_show_sourcelink = False
html_favicon = html_logo = '_static/logo.svg'
html_theme_options = dict(navigation_with_keys=True)
