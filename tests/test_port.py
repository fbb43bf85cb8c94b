"""``gru-equiv port``: every target written, loaded back by its own framework and compared; inexact ports refused."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import module_or_skip
from .test_inspect import _keras_model, _torch_checkpoint


def _load_back(target: str, path, x, h0):
    """Run the written file in the target framework directly (not through the port's own reader)."""
    if target == "torch":
        torch = module_or_skip("torch")
        from safetensors.torch import load_file

        state = load_file(str(path)) if str(path).endswith(".safetensors") else torch.load(path, weights_only=True)
        layers = 1 + max(int(k.split("_l")[1][0]) for k in state)
        bidirectional = any(k.endswith("_reverse") for k in state)
        hidden = state["weight_hh_l0"].shape[1]
        gru = torch.nn.GRU(state["weight_ih_l0"].shape[1], hidden, num_layers=layers, bidirectional=bidirectional,
                           bias="bias_ih_l0" in state, batch_first=True)
        gru.load_state_dict(state)
        with torch.no_grad():
            outputs, h_last = gru(torch.from_numpy(x), torch.from_numpy(h0))
        return outputs.numpy(), h_last.numpy()
    if target == "keras":
        keras = module_or_skip("keras")
        model = keras.saving.load_model(str(path), safe_mode=True)
        return np.asarray(model(x)), None  # the model is x -> sequence (zero initial state)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {"X": x.transpose(1, 0, 2).copy(), "sequence_lens": np.full(x.shape[0], x.shape[1], np.int32)}
    directions = h0.shape[0] // sum(n.startswith("initial_h_") for n in names)
    for name in names:
        if name.startswith("initial_h_"):
            k = int(name.rsplit("_", 1)[1])
            feeds[name] = h0[k * directions:(k + 1) * directions].copy()
    y, *states = session.run(None, feeds)
    return y.transpose(2, 0, 1, 3).reshape(x.shape[0], x.shape[1], -1), np.concatenate(states)


def _onnx_stack(path):
    """A two-layer ONNX GRU (two chained nodes, as torch.onnx.export writes a num_layers=2 nn.GRU)."""
    import onnx

    import adapters
    from adapters.onnx_runtime import build_model
    from reference import random_layers

    row = adapters.get("onnxruntime").configuration("[GRU, GRU](linear_before_reset=1)").option("row")
    onnx.save(build_model(row, random_layers(3, 4, num_layers=2, seed=6, dtype=np.float32), "float32"), str(path))


# (source maker, --name, target, out file): every target from a torch and a Keras source
ROUND_TRIPS = [
    (_torch_checkpoint, "model_state_dict.encoder", "torch", "encoder.safetensors"),
    (_torch_checkpoint, "model_state_dict.decoder", "torch", "decoder.pt"),
    (_torch_checkpoint, "model_state_dict.encoder", "keras", "encoder.keras"),
    (_torch_checkpoint, "model_state_dict.encoder", "onnx", "encoder.onnx"),
    (_keras_model, "before", "onnx", "before.onnx"),
    (_keras_model, "before", "keras", "before.keras"),
    (_onnx_stack, "gru_0+gru_1", "torch", "stack.safetensors"),
]


@pytest.mark.parametrize("make, name, target, out", ROUND_TRIPS,
                         ids=[f"{m.__name__.strip('_')}:{n}->{t}" for m, n, t, _ in ROUND_TRIPS])
def test_round_trip_is_exact_when_loaded_by_the_target(tmp_path, make, name, target, out):
    module_or_skip({"torch": "torch", "keras": "keras", "onnx": "onnxruntime"}[target])  # it loads the file back
    from adapters.formats import open_file, own_forward
    from adapters.formats.base import probe_inputs
    from reports.port import port_file

    source = tmp_path / {_torch_checkpoint: "source.pt", _keras_model: "source.keras", _onnx_stack: "source.onnx"}[make]
    make(source)
    inputs = tmp_path / "inputs.npy"
    found = next(g for g in open_file(source)[1] if g.location == name)
    np.save(inputs, np.random.default_rng(0).normal(size=(2, 5, found.input_size)).astype(np.float32))
    result = port_file(source, target, tmp_path / out, inputs=inputs, name=name)
    assert result.passed and len(result.checks) == 2 + (target == "keras"), result.describe()
    x, h0 = probe_inputs(found.input_size, found.hidden_size, found.num_layers * found.directions, np.float32, 0.7, 5)
    if target == "keras":
        h0 = np.zeros_like(h0)
    written = _load_back(target, tmp_path / out, x, h0)
    expected = own_forward(found)(x, h0)
    for part, got, want in zip(("outputs", "h_last"), written, expected):
        if got is None:
            continue
        assert np.abs(got - want).max() < 1e-5, f"{part}: {np.abs(got - want).max()}"


REFUSED = [
    # (source maker, --name, target, out, a phrase of the reason, a phrase of the alternative)
    (_keras_model, "before", "torch", "x.safetensors", "always computes reset after", "--to onnx"),
    (_torch_checkpoint, "model_state_dict.decoder", "onnx", "x.keras", "written as .onnx", ".onnx"),
]


@pytest.mark.parametrize("make, name, target, out, reason, alternative", REFUSED, ids=["reset-before->torch", "bad --out"])
def test_inexact_or_bad_ports_are_refused(tmp_path, capsys, make, name, target, out, reason, alternative):
    from reports.cli import main

    source = tmp_path / ("source.pt" if make is _torch_checkpoint else "source.keras")
    make(source)
    with pytest.raises(SystemExit) as exited:
        main(["port", str(source), "--name", name, "--to", target, "--out", str(tmp_path / out)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and reason in err and alternative in err, err
    assert not (tmp_path / out).exists()


def test_never_overwrites_without_force_and_writes_the_report(tmp_path, capsys):
    from reports.cli import main

    source = tmp_path / "source.pt"
    _torch_checkpoint(source)
    out = tmp_path / "decoder.onnx"
    out.write_bytes(b"keep me")
    argv = ["port", str(source), "--name", "model_state_dict.decoder", "--to", "onnx", "--out", str(out)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(argv + ["--force", "--report", str(tmp_path / "report")]) == 0
    text = capsys.readouterr().out
    assert "verdict: pass" in text and "max abs error" in text, text
    page = (tmp_path / "report" / "port.html").read_text()
    assert "PASS" in page and "model_state_dict.decoder" in page, page[:500]
    assert out.read_bytes() != b"keep me"
