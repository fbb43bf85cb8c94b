"""The one place for known deviations, each with its reason: findings, not failures.

Keys are ``(framework, configuration, dtype, aspect)``; ``configuration`` may be an ``fnmatch``
pattern (``"*"``: every configuration of that framework; a leading ``!`` matches every configuration the rest
does *not* match, e.g. ``"!* + x64"``: every row that does not turn on JAX's float64). ``aspect`` is the separate answer that
deviates: ``"formula"`` (the row computes another formula than its documentation claims, or none),
``"precision"`` (it computes at lower precision than requested). A listed row turns its test into a
strict xfail, so the entry fails loudly the day the deviation disappears.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

KERAS_NON_TF_FLOAT64 = (
    "Keras 3 demotes float64 to float32 in its own ops on every backend but TensorFlow: "
    "keras/src/backend/common/dtypes.py:240 (keras 3.15.1) maps float64 -> float32 unless the backend is tensorflow "
    "and _lattice_result_type applies it (:274-276), so keras.ops.matmul of two float64 tensors casts both to float32 "
    "(keras/src/backend/torch/numpy.py, matmul: cast(x, result_type)); GRUCell.call (masked rows, reset_after=False, "
    "RNN(GRUCell)) multiplies with ops.matmul and computes in float32 (measured error ~1e-7 against float64); the "
    "unmasked reset_after=True GRU takes the backend's own GRU loop, which calls torch/jax directly and keeps float64"
)
KERAS_JAX_FLOAT32 = (
    "Keras 3 on JAX never computes a GRU in float64 here: without jax_enable_x64 JAX itself is float32 "
    "(jax/_src/config.py: enable_x64 defaults to False) while the layer reports compute_dtype float64; with "
    "jax_enable_x64 (the '+ jax_enable_x64' rows, and a global jax.config.update measured the same) the error "
    "against the float64 reference stays ~5e-8, float32 rounding: keras/src/backend/common/dtypes.py:240 demotes "
    "float64 on non-TensorFlow backends"
)
JAX_DEFAULT_FLOAT32 = (
    "JAX computes in float32 unless jax_enable_x64 is on (jax/_src/config.py: enable_x64 defaults to False): a "
    "float64 request is computed in float32 (max abs error ~1e-7 where float64 stays below 2e-12); Haiku casts "
    "silently (haiku/_src/recurrent.py:568, parameters take the input's dtype :575-579), Equinox warns once when "
    "GRUCell(dtype=float64) is built and holds float32 (equinox/nn/_rnn.py:59-61); the '+ x64' rows compute in "
    "float64 (error ~2e-16); Flax's linen/nnx GRUCell(dtype=param_dtype=float64) likewise hold float32 parameters"
)
GRU_BLOCK_CELL_FLOAT32_ONLY = (
    "tf.raw_ops.GRUBlockCell is registered for float32 only (tensorflow/core/ops/rnn_ops.cc:25-26, "
    ".Attr(\"T: {float}\")); TF 2.21 refuses float64: \"Value for attr 'T' of double is not in the list of allowed "
    "values: float\", so no formula or precision can be measured in float64"
)
ORT_NO_FLOAT64 = (
    "onnxruntime 1.32.0 registers the GRU kernel for double, but DeepCpuGruOp::Compute (deep_cpu_gru.cc) raises "
    "'GRU operator does not support double yet': every float64 graph fails to run (it refuses, never rounds)"
)
ORT_NO_LAYOUT_1 = (
    "onnxruntime 1.32.0 does not implement the GRU attribute layout=1 (onnx/defs/rnn/defs.cc:80-92): the session "
    "fails to load, 'Batchwise recurrent operations (layout == 1) are not supported' (deep_cpu_gru.h:56); "
    "onnx.reference runs the same graph correctly"
)
ORT_THRESHOLDED_RELU = (
    "onnxruntime 1.32.0 defaults ThresholdedRelu's alpha to 0 (rnn_helpers.cc NameToArgDefaultsMap) where the "
    "operator's spec says 1.0 (onnx/defs/math/defs.cc:309): max abs error 0.81 against the spec, 1.6e-7 against alpha=0"
)
ONNX_REFERENCE_IGNORES_LENGTHS = (
    "onnx.reference's GRU ignores sequence_lens (onnx/reference/ops/op_gru.py:142, onnx 1.23.2): padded steps are "
    "computed like real ones; diagnosis 'mask ignored', max abs error 0.59-0.98; onnxruntime honours it"
)
ONNX_REFERENCE_IGNORES_ACTIVATIONS = (
    "onnx.reference's GRU ignores activations, activation_alpha/beta and clip (op_gru.py:143-147, 'TODO: support "
    "overridden attributes' :153): always Sigmoid/Tanh, unclipped; no convention fits (max abs error 0.72)"
)
PADDLE_BIAS_ATTR_CRASH = (
    "paddle.nn.GRU with bias_ih_attr=False or bias_hh_attr=False cannot run (paddlepaddle 3.3.1): RNNBase.__init__ "
    "zips the names of the parameters it keeps with all of them (paddle/nn/layer/rnn.py:1611-1619) and "
    "flatten_parameters (:1640-1644) hands the fused kernel 2 or 3 tensors per cell where it reads 4: SIGSEGV, "
    "contained in the adapter's worker; RNN(GRUCell) with the same options runs correctly"
)
EXPECTED_FAILURES: dict[tuple[str, str, str, str], str] = {
    ("keras-jax", "*", "float64", "precision"): KERAS_JAX_FLOAT32,
    **{("keras-torch", pattern, "float64", "precision"): KERAS_NON_TF_FLOAT64
       for pattern in ("*mask*", "RNN(GRUCell(*", "*reset_after=False*")},
    ("flax", "!* + x64", "float64", "precision"): JAX_DEFAULT_FLOAT32,
    ("haiku", "!* + x64", "float64", "precision"): JAX_DEFAULT_FLOAT32,
    ("equinox", "!* + x64", "float64", "precision"): JAX_DEFAULT_FLOAT32,
    **{("onnxruntime", "*", "float64", aspect): ORT_NO_FLOAT64 for aspect in ("formula", "precision")},
    **{("onnxruntime", "*layout=1*", "float32", aspect): ORT_NO_LAYOUT_1 for aspect in ("formula", "precision")},
    **{("onnxruntime", "*ThresholdedRelu*", "float32", aspect): ORT_THRESHOLDED_RELU
       for aspect in ("formula", "precision")},
    **{("onnx-reference", "*sequence_lens*", dtype, "formula"): ONNX_REFERENCE_IGNORES_LENGTHS
       for dtype in ("float32", "float64")},
    **{("onnx-reference", "*activations=*", dtype, aspect): ONNX_REFERENCE_IGNORES_ACTIVATIONS
       for dtype in ("float32", "float64") for aspect in ("formula", "precision")},
    ("tf-legacy", "tf.raw_ops.GRUBlockCell", "float64", "formula"): GRU_BLOCK_CELL_FLOAT32_ONLY,
    ("tf-legacy", "tf.raw_ops.GRUBlockCell", "float64", "precision"): GRU_BLOCK_CELL_FLOAT32_ONLY,
    **{("paddle", "nn.GRU(bias_*", dtype, aspect): PADDLE_BIAS_ATTR_CRASH
       for dtype in ("float32", "float64") for aspect in ("formula", "precision")},
}


def _matches(config: str, pattern: str) -> bool:
    if pattern.startswith("!"):
        return not _matches(config, pattern[1:])
    return config == pattern or fnmatchcase(config, pattern)


def expected_failure(framework: str, config: str, dtype: str, aspect: str) -> str | None:
    for (name, pattern, wanted_dtype, wanted_aspect), reason in EXPECTED_FAILURES.items():
        if (name, wanted_dtype, wanted_aspect) == (framework, dtype, aspect) and _matches(config, pattern):
            return reason
    return None
