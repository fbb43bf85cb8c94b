"""The ONNX tamper audit: a real torch.onnx export, planted with each known tampering, must be named.

Each case is data: how the file is changed, the verdict, and the mistake names the audit must give
(``reference.mistakes`` names, each with a fix). The untouched export must be judged exact, and the
audit never changes the model it is given.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.conftest import adapter_or_skip, module_or_skip

onnx = module_or_skip("onnx")
module_or_skip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

from adapters.paths.onnx_audit import audit_onnx, infer_io  # noqa: E402

TORCH_CONVENTION = "z_on_previous+reset_after"
HIDDEN = 5


@pytest.fixture(scope="module")
def export():
    """``(model, canonical layers)`` of ``nn.GRU(batch_first=True)`` exported by torch.onnx (TorchScript)."""
    import tempfile
    from pathlib import Path

    import adapters.paths
    from reports.matrix import DEFAULT_CASE, make_probe

    torch = adapter_or_skip("torch")
    try:
        path = adapters.paths.get("torch-onnx-script")
    except adapters.paths.PathUnavailable as unavailable:
        pytest.skip(unavailable.reason)
    config = torch.configuration("nn.GRU(batch_first=True)")
    probe = make_probe(DEFAULT_CASE, config, np.float32)
    module = torch.build(config, probe.layers, np.float32)
    with tempfile.TemporaryDirectory() as folder:
        converted = path.convert(module, config, np.dtype("float32"), Path(folder))
    return converted.artifact, torch.extract(module)


def _gru(model):
    return next(node for node in model.graph.node if node.op_type == "GRU")


def _initializer(model, name):
    return next(tensor for tensor in model.graph.initializer if tensor.name == name)


def _set_attribute(model, name, value):
    node = _gru(model)
    for attribute in list(node.attribute):
        if attribute.name == name:
            node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute(name, value))


def _rewrite(model, slot, change):
    tensor = _initializer(model, _gru(model).input[slot])
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor).copy()), tensor.name))


def _swap_z_r_rows(array):  # W [D, 3H, I] / R [D, 3H, H]: row blocks z | r | h
    d, rows, cols = array.shape
    return array.reshape(d, 3, rows // 3, cols)[:, [1, 0, 2]].reshape(d, rows, cols)


def _swap_z_r_bias(array):  # B [D, 6H] = Wb z|r|h, Rb z|r|h
    d, width = array.shape
    return array.reshape(d, 2, 3, width // 6)[:, :, [1, 0, 2]].reshape(d, width)


def _zero_recurrent_bias(array):
    array[:, array.shape[1] // 2:] = 0
    return array


def _flip_lbr(model):
    _set_attribute(model, "linear_before_reset", 0)


def _permute(*slots):
    def change(model):
        for slot in slots:
            _rewrite(model, slot, _swap_z_r_bias if slot == 3 else _swap_z_r_rows)
    return change


TAMPERS = [
    # (case, tamper, verdict, names the audit must give)
    ("untouched", lambda model: None, "exact", []),
    ("linear_before_reset flipped", _flip_lbr, "formula changed", ["reset placement flipped"]),
    ("W gate blocks z<->r", _permute(1), "mistake named", ["input weights: z<->r"]),
    ("R gate blocks z<->r", _permute(2), "mistake named", ["recurrent weights: z<->r"]),
    ("B gate blocks z<->r", _permute(3), "mistake named", ["biases: z<->r"]),
    ("W, R and B gate blocks z<->r", _permute(1, 2, 3), "mistake named", ["all gate blocks: z<->r"]),
    ("recurrent half of B zeroed", lambda model: _rewrite(model, 3, _zero_recurrent_bias), "mistake named",
     ["recurrent biases c_z, c_r, c_h absent"]),
    ("direction reversed", lambda model: _set_attribute(model, "direction", "reverse"), "mistake named",
     ["time reversed"]),
]


@pytest.mark.parametrize("case, tamper, verdict, names", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_audit_names_each_tampering(export, case, tamper, verdict, names):
    model, layers = export
    tampered = copy.deepcopy(model)
    tamper(tampered)
    before = tampered.SerializeToString()
    audit = audit_onnx(tampered, layers, TORCH_CONVENTION)
    assert tampered.SerializeToString() == before, f"{case}: the audit changed the model it was given"
    assert (audit.verdict, audit.names) == (verdict, names), f"{case}: got {audit.verdict!r} {audit.names}\n{audit.describe()}"
    assert len(audit.fixes) == len(names) and all(audit.fixes), f"{case}: every named mistake needs a fix: {audit.fixes}"
    document = audit.to_json()
    assert document["verdict"] == verdict and document["names"] == names, document
    assert document["emitted"]["ops"].get("GRU") == 1, f"{case}: the export should hold one GRU node: {document['emitted']}"


def test_audit_reads_files_and_bytes(export, tmp_path):
    model, layers = export
    target = tmp_path / "gru.onnx"
    onnx.save(model, str(target))
    for given in (target, str(target), model.SerializeToString()):
        audit = audit_onnx(given, layers, TORCH_CONVENTION)
        assert audit.verdict == "exact", f"{type(given).__name__}: {audit.describe()}"
    io = infer_io(model, directions=1)
    assert (io.x_name, io.h0_names, io.x_layout) == ("x", ("h0",), "batch_time"), io


BAD_INPUTS = [
    ("missing file", lambda layers: ("no/such/file.onnx", layers, TORCH_CONVENTION), FileNotFoundError, "no/such/file.onnx"),
    ("not a model", lambda layers: (123, layers, TORCH_CONVENTION), TypeError, "int"),
    ("bad convention", lambda layers: (None, layers, "z_on_nothing"), ValueError, "z_on_nothing"),
    ("bad layers", lambda layers: (None, [[]], TORCH_CONVENTION), ValueError, "source_layers"),
]


@pytest.mark.parametrize("case, arguments, error, named", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_audit_refuses_bad_input_by_name(export, case, arguments, error, named):
    model, layers = export
    given = arguments(layers)
    given = (model if given[0] is None else given[0], *given[1:])
    with pytest.raises(error) as raised:
        audit_onnx(*given)
    assert named in str(raised.value), f"{case}: the message should name {named!r}: {raised.value}"
