"""For the containment tests: conversion paths (tests/test_conversions.py), one whose converter kills its own
process with SIGSEGV, as a crash in a converter's native code would, and one that passes the source through; and
framework adapters (tests/test_lanes.py), one that segfaults in its forward pass and one that computes as documented."""

from __future__ import annotations

import os
import signal

from adapters.paths.base import ConversionPath, Converted
from tests.fake_adapters import PREVIOUS_AFTER, ReferenceBackedAdapter


class _OnnxRuntimeSourced(ConversionPath):
    source = "onnxruntime"

    def versions(self) -> dict[str, str]:
        return {}

    def source_configs(self) -> tuple[str, ...]:
        return ("GRU",)


class CrashingPath(_OnnxRuntimeSourced):
    id, title, tool = "crashing", "a converter that segfaults", "tests.crashing_path"

    def convert(self, layer, config, dtype, workdir):
        os.kill(os.getpid(), signal.SIGSEGV)


class IdentityPath(_OnnxRuntimeSourced):
    id, title, tool = "identity", "the source itself", "tests.crashing_path"

    def convert(self, layer, config, dtype, workdir):
        import adapters

        source = adapters.get(self.source)
        return Converted(run=lambda x, h0=None, mask=None: source.run(layer, x, h0, mask), emitted={})


CRASHING = CrashingPath()
IDENTITY = IdentityPath()


class SegfaultingAdapter(ReferenceBackedAdapter):
    """A framework whose forward pass kills its own process with SIGSEGV, as a crash in native code would."""

    def run(self, layer, x, h0=None, mask=None):
        os.kill(os.getpid(), signal.SIGSEGV)


SEGFAULTING_ADAPTER = SegfaultingAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="segfaulting")
HONEST_ADAPTER = ReferenceBackedAdapter(PREVIOUS_AFTER, PREVIOUS_AFTER, name="honest")
