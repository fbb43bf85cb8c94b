"""The README's Python examples run as written (a user copies it; it must not rot)."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import module_or_skip

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_python_examples_run_as_written(capsys):
    module_or_skip("torch")
    module_or_skip("keras")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no ```python block"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "all gate blocks: z<->r" in out, out  # the identify example diagnoses its planted mistake
    assert "z_on_previous+reset_after" in out and "torch vs keras, max abs difference:" in out, out
    difference = float(re.search(r"max abs difference: (\S+)", out).group(1))
    assert difference < 1e-5, out
