"""Built-in offline image models: a deterministic Pillow renderer.

The picture is derived from the prompt (palette, shapes, caption), the seed (layout) and
the reference images (composited per style). Same inputs -> byte-identical PNG.

Styles (``ModelSpec.style``):

* ``sketch``  - tinted paper with a grid, outlined/hatched shapes, references pinned as
  taped instant photos.
* ``studio``  - lit gradient stage with glows and shadowed shapes; the first reference is
  blended into the backdrop and every reference hangs as a framed panel.
* ``collage`` - references (or coloured cards) laid out as a grid of cut-out tiles,
  overlaid with paper shapes.
"""

from easel_worker.models.builtin.palette import COLOR_WORDS
from easel_worker.models.builtin.provider import BLOCKED_MESSAGE, BuiltinProvider
from easel_worker.models.builtin.styles import render

__all__ = ["BLOCKED_MESSAGE", "COLOR_WORDS", "BuiltinProvider", "render"]
