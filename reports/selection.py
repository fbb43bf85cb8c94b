"""What a command is asked to do, checked before any work: framework, configuration and dtype
names, the seed, and the places it will write to.

Every problem is a ``UsageError``: one line that names the bad value and the fix, which ``cli``
prints as ``gru-equiv: ...`` with exit status 2 (argparse's own status for bad arguments), and the
pytest plugin prints for ``--gru-report``. A selection never silently runs nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

import adapters

from .matrix import DTYPES, Case, ConfigResult, UnavailableFramework, run_matrix

# The probe's generator takes any non-negative integer, but a seed is something a user types and
# a report shows: the unsigned 32-bit range covers every seed worth typing and refuses -1 or 1e30.
SEED_MIN, SEED_MAX = 0, 2**32 - 1


class UsageError(Exception):
    """A bad argument, found before any work; the message is one line naming it and the fix."""


def seed(text: str) -> int:
    """argparse ``type=`` for ``--seed``: an integer in [SEED_MIN, SEED_MAX]."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; valid: {SEED_MIN} to {SEED_MAX}") from None
    if not SEED_MIN <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range; valid: {SEED_MIN} to {SEED_MAX}")
    return value


def positive_integer(text: str) -> int:
    """argparse ``type=`` for counts such as ``--jobs``."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give a count of 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count; give 1 or more")
    return value


def parse_dtypes(names: list[str]) -> tuple[np.dtype, ...]:
    valid = {d.name: d for d in DTYPES}
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise UsageError(f"unknown dtype {unknown[0]!r}; valid: {', '.join(valid)}")
    return tuple(valid[name] for name in dict.fromkeys(names))


def check_frameworks(names: list[str] | None) -> list[str] | None:
    for name in names or []:
        if name not in adapters.REGISTRY:
            raise UsageError(f"unknown framework {name!r}; valid: {', '.join(adapters.REGISTRY)}")
    return list(dict.fromkeys(names)) if names else None


def check_configs(frameworks: list[str] | None, configs: list[str] | None) -> None:
    """Every ``--config`` name must belong to a selected, available framework.

    An unavailable framework's configurations cannot be listed (its module does not load), so a
    name is unknown even when some framework is unavailable; the message says which are.
    """
    if not configs:
        return
    known: set[str] = set()
    unavailable = []
    for name in frameworks or list(adapters.REGISTRY):
        status = adapters.status()[name]
        if isinstance(status, adapters.AdapterUnavailable):
            unavailable.append(f"{name} ({status.reason})")
        else:
            known.update(config.name for config in status.configurations())
    unknown = [name for name in configs if name not in known]
    if unknown:
        hint = f"; unavailable here, so not searched: {', '.join(unavailable)}" if unavailable else ""
        raise UsageError(
            f"unknown configuration(s) {unknown} among the selected frameworks; `gru-equiv list` shows the valid names{hint}"
        )


def run_selection(
    frameworks: list[str] | None,
    configs: list[str] | None,
    dtype_names: list[str],
    probe_seed: int,
    progress=None,
    **options,
) -> list[ConfigResult | UnavailableFramework]:
    """Check the names, run the matrix (``options``: ``run_matrix``'s ``gradients``, ``jobs``,
    ``alongside``), and refuse a selection that ran no configuration."""
    frameworks = check_frameworks(frameworks)
    dtypes = parse_dtypes(dtype_names)
    check_configs(frameworks, configs)
    rows = run_matrix(frameworks, dtypes, Case(seed=probe_seed), configs, progress, **options)
    if not any(isinstance(row, ConfigResult) for row in rows):
        reasons = "; ".join(f"{row.framework}: {row.reason}" for row in rows if isinstance(row, UnavailableFramework))
        raise UsageError(f"the selection ran no configuration ({reasons or 'nothing selected'}); "
                         f"`gru-equiv list` shows what is available")
    return rows


# ----------------------------------------------------------------- output places


def _first_existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _probe_writable(directory: Path, option: str, shown: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".gru-equiv-probe-"):
            pass
    except OSError as error:
        raise UsageError(f"{option} {shown}: cannot write in {directory} ({error.strerror or error}); "
                         f"choose a writable place") from None


def output_directory(value, option: str) -> Path:
    """A directory the command can write into, created now, so no work is done for nothing."""
    if value is None or str(value).strip() == "":
        raise UsageError(f"{option} is empty; give a directory to write into, e.g. {option} gru-report")
    path = Path(os.path.expanduser(str(value)))
    shown = repr(str(value))
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {shown} is a file, not a directory; give a directory (it is created if missing)")
    ancestor = _first_existing_ancestor(path)
    if ancestor != path and not ancestor.is_dir():
        raise UsageError(f"{option} {shown} lies under {str(ancestor)!r}, which is a file; choose a path under a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option} {shown}: cannot create it ({error.strerror or error}); choose a writable place") from None
    _probe_writable(path, option, shown)
    return path


def output_file(value, option: str) -> Path:
    """A file path the command can write (its folder must exist or be creatable and be writable)."""
    if value is None or str(value).strip() == "":
        raise UsageError(f"{option} is empty; give a file path, e.g. {option} baseline.json")
    path = Path(os.path.expanduser(str(value)))
    shown = repr(str(value))
    if path.is_dir():
        raise UsageError(f"{option} {shown} is a directory; give a file path inside it, e.g. {path / 'baseline.json'}")
    ancestor = _first_existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise UsageError(f"{option} {shown} lies under {str(ancestor)!r}, which is a file; choose a path under a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {shown} exists and is not writable; choose another file or change its permissions")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{option} {shown}: cannot create its folder ({error.strerror or error}); "
                         f"choose a writable place") from None
    _probe_writable(path.parent, option, shown)
    return path
