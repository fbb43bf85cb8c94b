"""Hide frameworks from a Python process, as if they were not installed.

With this folder on ``PYTHONPATH`` and ``GRU_EQUIV_HIDE=torch,tensorflow`` (comma-separated top-level
package names), importing one of them, or anything under it, raises ``ModuleNotFoundError``, and
``importlib.util.find_spec`` reports it absent. Used by ``tests/test_hidden_frameworks.py`` to prove
the suite and ``gru-equiv`` work with any framework missing; child processes inherit it.
"""

import importlib.abc
import os
import sys

_HIDDEN = {name.strip() for name in os.environ.get("GRU_EQUIV_HIDE", "").split(",") if name.strip()}


class _HiddenFrameworks(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by GRU_EQUIV_HIDE)", name=fullname)
        return None


if _HIDDEN:
    sys.meta_path.insert(0, _HiddenFrameworks())
