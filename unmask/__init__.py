"""unmask: inline code completion and next-edit prediction from a local masked-diffusion model.

The distribution maps the repo's root folders into one namespace: ``unmask.engine``
(``engine/``), ``unmask.context`` (``context/``) and ``unmask.lsp`` (``lsp/``).
"""

__version__ = "0.1.0"
