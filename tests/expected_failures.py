"""The one place for known deviations, each with its reason: findings, not failures.

Keys are ``(framework, configuration, dtype, aspect)``; ``configuration`` may be an ``fnmatch``
pattern (``"*"``: every configuration of that framework). ``aspect`` is the separate answer that
deviates: ``"formula"`` (the row computes another formula than its documentation claims, or none),
``"precision"`` (it computes at lower precision than requested). A listed row turns its test into a
strict xfail, so the entry fails loudly the day the deviation disappears.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

EXPECTED_FAILURES: dict[tuple[str, str, str, str], str] = {
}


def expected_failure(framework: str, config: str, dtype: str, aspect: str) -> str | None:
    for (name, pattern, wanted_dtype, wanted_aspect), reason in EXPECTED_FAILURES.items():
        if (name, wanted_dtype, wanted_aspect) == (framework, dtype, aspect) and fnmatchcase(config, pattern):
            return reason
    return None
