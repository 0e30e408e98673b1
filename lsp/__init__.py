"""unmask's language server: ``server`` (pygls wiring, transports), ``completer`` (per-document
scheduling), ``worker`` (the model thread), ``shape`` (span choice and suggestion text),
``convert`` (all LSP type conversion), ``config`` (settings), ``protocol`` (custom methods),
``doctor`` and ``cli``. It imports ``engine`` (and later ``context``); they never import it."""
