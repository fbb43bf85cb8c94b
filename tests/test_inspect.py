"""``gru-equiv inspect``: real files written here by each framework, and bad files refused (exit 2, one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import module_or_skip


def _torch_checkpoint(path):
    """A checkpoint with two GRUs (one stacked and bidirectional, one bias-free) plus other layers."""
    torch = module_or_skip("torch")
    torch.manual_seed(1)
    model = torch.nn.ModuleDict({
        "encoder": torch.nn.GRU(3, 4, num_layers=2, bidirectional=True),
        "head": torch.nn.Linear(8, 2),
        "decoder": torch.nn.GRU(4, 5, bias=False),
        "lstm": torch.nn.LSTM(3, 4),
    })
    torch.save({"model_state_dict": model.state_dict(), "epoch": 3}, path)
    return {"model_state_dict.encoder": (3, 4, 2, 2, True), "model_state_dict.decoder": (4, 5, 1, 1, False)}


def _safetensors(path):
    torch = module_or_skip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(2)
    save_file(torch.nn.GRU(3, 6, num_layers=2).state_dict(), str(path))
    return {"(top level)": (3, 6, 2, 1, True)}


def _bfloat16_safetensors(path):
    torch = module_or_skip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(7)
    save_file({f"gru.{k}": v for k, v in torch.nn.GRU(3, 4).to(torch.bfloat16).state_dict().items()}, str(path))
    return {"gru": (3, 4, 1, 1, True)}


def _npz(path):
    torch = module_or_skip("torch")
    torch.manual_seed(3)
    np.savez(path, **{f"rnn.{k}": v.numpy() for k, v in torch.nn.GRU(2, 3, bidirectional=True).state_dict().items()})
    return {"rnn": (2, 3, 1, 2, True)}


def _keras_model(path):
    keras = module_or_skip("keras")
    inputs = keras.Input((None, 3))
    hidden = keras.layers.GRU(4, return_sequences=True, reset_after=False, name="before")(inputs)
    hidden = keras.layers.Bidirectional(keras.layers.GRU(5, use_bias=False), name="bidi")(hidden)
    keras.Model(inputs, keras.layers.Dense(2)(hidden)).save(str(path))
    return {"before": (3, 4, 1, 1, True), "bidi": (4, 5, 1, 2, False)}


def _keras_weights(path):
    keras = module_or_skip("keras")
    inputs = keras.Input((None, 2))
    hidden = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True), name="bidi")(inputs)
    keras.Model(inputs, keras.layers.GRU(4, reset_after=False, name="top")(hidden)).save_weights(str(path))
    # Keras 3 names the groups by class, not by the layer names (inspected on files written by 3.15.1)
    return {"layers/bidirectional": (2, 3, 1, 2, True), "layers/gru": (6, 4, 1, 1, True)}


def _cell_npz(path):
    torch = module_or_skip("torch")
    torch.manual_seed(5)
    np.savez(path, **{f"cell.{k}": v.numpy() for k, v in torch.nn.GRUCell(3, 2).state_dict().items()})
    return {"cell": (3, 2, 1, 1, True)}


def _onnx_model(path):
    module_or_skip("onnx")
    import onnx

    import adapters
    from adapters.onnx_runtime import build_model
    from reference import random_layers

    row = adapters.get("onnxruntime").configuration("GRU(direction='bidirectional', linear_before_reset=1)").option("row")
    onnx.save(build_model(row, random_layers(3, 4, bidirectional=True, seed=4, dtype=np.float32), "float32"), str(path))
    return {"gru_0": (3, 4, 1, 2, True)}


FILES = [("checkpoint.pt", _torch_checkpoint), ("weights.safetensors", _safetensors), ("arrays.npz", _npz),
         ("bfloat16.safetensors", _bfloat16_safetensors),
         ("model.keras", _keras_model), ("model.onnx", _onnx_model), ("model.weights.h5", _keras_weights),
         ("cell.npz", _cell_npz)]


@pytest.mark.parametrize("filename, make", FILES, ids=[name for name, _ in FILES])
def test_inspect_finds_and_confirms_every_gru(tmp_path, filename, make):
    from reports.inspect import inspect_file

    path = tmp_path / filename
    expected = make(path)
    before = path.read_bytes()
    result = inspect_file(path)
    seen = {found.location: found for found, _ in result.grus}
    assert set(seen) == set(expected), f"{filename}: found {sorted(seen)}, expected {sorted(expected)}"
    for location, (input_size, hidden, layers, directions, bias) in expected.items():
        found = seen[location]
        assert (found.input_size, found.hidden_size, found.num_layers, found.directions, found.has_bias) == \
            (input_size, hidden, layers, directions, bias), f"{filename}:{location}: {found.to_json()}"
    for found, confirmation in result.grus:
        assert confirmation.verdict == "confirmed" and confirmation.matched == found.convention, \
            f"{filename}:{found.location}: {confirmation.describe()}"
    assert path.read_bytes() == before, "inspect changed the file"
    json.dumps(result.to_json())  # the --json form is plain data


def test_saturated_gates_are_ambiguous_not_guessed(tmp_path):
    """z pinned at 1 (b_z = 50) makes h_t = h_prev whatever the reset placement: no input scale separates them."""
    torch = module_or_skip("torch")
    from reports.inspect import inspect_file

    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4)
    with torch.no_grad():
        gru.bias_ih_l0[4:8] = 50.0  # rows r, z, n: the z block
    torch.save(gru.state_dict(), tmp_path / "saturated.pt")
    (_, confirmation), = inspect_file(tmp_path / "saturated.pt").grus
    assert confirmation.verdict == "ambiguous" and confirmation.matched is None, confirmation.describe()
    assert "cannot tell the conventions apart" in confirmation.reason, confirmation.reason


def _loop_model(path):
    import onnx
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["h_in"], ["h_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["steps", "", "h0"], ["h"], body=body, name="unrolled_gru")], "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in (("steps", TensorProto.INT64, []),
                                                                 ("h0", TensorProto.FLOAT, [2]))],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph), str(path))


def _write(path, data: bytes):
    path.write_bytes(data)


BAD = [
    ("empty.pt", lambda p: _write(p, b""), "empty"),
    ("truncated.onnx", lambda p: _write(p, b"\x08\x07\x12\x04abc\x3a\xff\xff"), "not a readable ONNX"),
    ("notes.txt", lambda p: _write(p, b"hello"), "unknown extension"),
    ("wrong.onnx", lambda p: _write(p, b"PK\x03\x04" + b"\0" * 60), "content is a zip"),
    ("corrupt.keras", lambda p: _write(p, b"PK\x03\x04garbage" + b"\0" * 40), "corrupt"),
    ("no_gru.npz", lambda p: np.savez(p, weight=np.ones((3, 3))), "no GRU found"),
    ("object.npz", lambda p: np.savez(p, weight=np.array([{"a": 1}], dtype=object)), "needs unpickling"),
    ("loop.onnx", _loop_model, "unrolled into Loop/Scan is not recognised"),
]


@pytest.mark.parametrize("filename, make, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_files_are_one_line_errors_with_exit_2(tmp_path, capsys, filename, make, phrase):
    from reports.cli import main

    path = tmp_path / filename
    make(path)
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.startswith("gru-equiv: ") and err.count("\n") == 1 and phrase in err, err


def test_a_pickled_module_is_refused_not_unpickled(tmp_path, capsys):
    torch = module_or_skip("torch")
    from reports.cli import main

    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.GRU(2, 3), path)
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "full unpickling" in err and "state_dict" in err, err


def test_several_grus_need_a_name(tmp_path, capsys):
    from reports.cli import main

    path = tmp_path / "checkpoint.pt"
    _torch_checkpoint(path)
    with pytest.raises(SystemExit) as exited:
        main(["port", str(path), "--to", "onnx", "--out", str(tmp_path / "out.onnx")])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "--name" in err and "model_state_dict.encoder" in err, err
    assert main(["inspect", str(path), "--json", "--name", "model_state_dict.decoder"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [g["location"] for g in payload["grus"]] == ["model_state_dict.decoder"], payload
    assert payload["grus"][0]["confirmation"]["verdict"] == "confirmed", payload


def test_a_format_whose_library_is_missing_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    from adapters import formats

    monkeypatch.setitem(formats.REGISTRY, "npz", "adapters.formats.no_such_module")
    formats._load.cache_clear()
    try:
        assert isinstance(formats.status()["npz"], formats.FormatUnavailable)
        np.savez(tmp_path / "a.npz", x=np.ones(3))
        with pytest.raises(formats.FormatError, match="unavailable: .*no_such_module"):
            formats.open_file(tmp_path / "a.npz")
    finally:
        monkeypatch.undo()
        formats._load.cache_clear()
