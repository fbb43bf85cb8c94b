"""Hide frameworks from a Python process, as if they were not installed.

With this folder on ``PYTHONPATH`` and ``GRU_EQUIV_HIDE=torch,tensorflow`` (comma-separated top-level
package names), importing one of them, or anything under it, raises ``ModuleNotFoundError``, and
``importlib.util.find_spec`` reports it absent. Used by ``tests/test_hidden_frameworks.py`` to prove
the suite and ``gru-equiv`` work with any framework missing; child processes inherit it.
"""

import importlib.abc
import importlib.util
import os
import sys

_HIDDEN = {name.strip() for name in os.environ.get("GRU_EQUIV_HIDE", "").split(",") if name.strip()}


class _HiddenFrameworks(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by GRU_EQUIV_HIDE)", name=fullname)
        return None


_real_find_spec = importlib.util.find_spec


def _find_spec(name, package=None):
    # A library probing for an optional dependency (``find_spec("tensorflow") is None``) must see it absent,
    # as it would if it were not installed, rather than meet the import error of the finder above.
    if name.partition(".")[0] in _HIDDEN:
        return None
    return _real_find_spec(name, package)


if _HIDDEN:
    sys.meta_path.insert(0, _HiddenFrameworks())
    importlib.util.find_spec = _find_spec
