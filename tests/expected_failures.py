"""The one place for known deviations: (framework, configuration, dtype) -> reason.

A configuration listed here is expected not to match its documented convention; the test
turns into a strict xfail, so it fails loudly if the deviation disappears.
"""

EXPECTED_FAILURES: dict[tuple[str, str, str], str] = {
    # None known with torch 2.13 and Keras 3.15 / TensorFlow 2.21 on CPU.
}


def expected_failure(framework: str, config: str, dtype: str) -> str | None:
    return EXPECTED_FAILURES.get((framework, config, dtype))
