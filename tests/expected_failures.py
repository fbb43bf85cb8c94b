"""The one place for known deviations, each with its reason: findings, not failures.

Keys are ``(framework, configuration, dtype, aspect)``; ``framework`` may name where the deviation is seen
(``"haiku on gpu"``: only where the adapter's ``versions()["device"]`` is a GPU; ``"onnx-openvino on bf16 cpu"``: only
where OpenVINO's CPU plugin defaults to bf16, see ``adapters.base.device_class``); ``configuration`` may be an ``fnmatch``
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
    "jax_enable_x64 (the '+ x64' rows, and a global jax.config.update measured the same) the error "
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
    "onnxruntime 1.32.0 defaults ThresholdedRelu's alpha to 0 (rnn_helpers.cc NameToArgDefaultsMap registers "
    "defaults for LeakyRelu, HardSigmoid and Elu only) where the operator's spec says 1.0 (onnx/defs/math/defs.cc:309): "
    "max abs error 0.81 against the spec; diagnosis 'absent activation parameters read as 0' fits to 1.6e-7"
)
ONNX_REFERENCE_IGNORES_LENGTHS = (
    "onnx.reference's GRU ignores sequence_lens (onnx/reference/ops/op_gru.py:142, onnx 1.23.2): padded steps are "
    "computed like real ones; diagnosis 'mask ignored', max abs error 0.59-0.98; onnxruntime honours it"
)
ONNX_REFERENCE_IGNORES_ACTIVATIONS = (
    "onnx.reference's GRU ignores activations, activation_alpha/beta and clip (op_gru.py:143-147, 'TODO: support "
    "overridden attributes' :153): always Sigmoid/Tanh, unclipped; no convention fits (max abs error 0.72), the "
    "diagnosis 'activations and clip ignored' fits to 1.1e-7 (float32) and 1.1e-16 (float64)"
)
PADDLE_BIAS_ATTR_CRASH = (
    "paddle.nn.GRU with bias_ih_attr=False or bias_hh_attr=False cannot run (paddlepaddle 3.3.1): RNNBase.__init__ "
    "zips the names of the parameters it keeps with all of them (paddle/nn/layer/rnn.py:1611-1619) and "
    "flatten_parameters (:1640-1644) hands the fused kernel 2 or 3 tensors per cell where it reads 4: SIGSEGV, "
    "contained in the adapter's worker; RNN(GRUCell) with the same options runs correctly"
)
TORCH_CUDA_TF32 = (
    "torch on a CUDA GPU computes float32 GRUs in TF32 by default: torch/include/ATen/Context.h:501 (torch 2.13.0) "
    "'bool allow_tf32_cudnn = true;' and :553 routes Float32Op::RNN to that default, so cuDNN's nn.GRU rounds matmul "
    "inputs to 10 mantissa bits: measured on an H100 and an H200 (torch 2.11.0+cu130, cuDNN 9.19) max abs error 3.2e-4 to "
    "4.9e-4 where float32 keeps 1.3e-7; torch.backends.cudnn.allow_tf32 = False restores float32 (5.0e-6). "
    "nn.GRUCell uses cuBLAS, which stays IEEE float32 (1.3e-7) unless torch.set_float32_matmul_precision('high') "
    "(Context.h:496-499 and :555): then 5.3e-4"
)
TORCH_CUDA_TF32_ROWS = (
    "nn.GRU(batch_first=True) [cuDNN, torch defaults]", "nn.GRU(num_layers=2, bidirectional=True) [cuDNN]",
    "nn.GRU + PackedSequence [cuDNN]", "nn.GRUCell [cuBLAS, float32_matmul_precision='high']",
)
JAX_GPU_TF32 = (
    "JAX on a GPU may round float32 dot products to TF32 ('by default, JAX leans toward speed: float32 dot products "
    "may be computed with reduced-precision arithmetic internally (... TF32 on recent GPUs)', "
    "docs.jax.dev/en/latest/201/precision.html); XLA decides per program. Measured on an H200 (jax 0.11.2): the "
    "forward of hk.GRU + static_unroll is TF32 (max abs error 2.4e-4, the TF32 model of the reference 2.7e-4), every "
    "other forward stays float32 (<= 1.7e-7); the float32 gradients of flax.nnx, Haiku and Equinox differ (nnx.RNN(GRUCell, "
    "reverse=True): 5.4e-4 in d/dx where float32 allows 1.5e-4; flax.linen's match); JAX_DEFAULT_MATMUL_PRECISION=float32 (or "
    "jax.config.update('jax_default_matmul_precision', 'float32')) restores float32 there: every one matches, "
    "forward <= 1.6e-7; on a CPU all of them are float32"
)
PADDLE_BIDIRECTIONAL_LENGTHS_GRADIENT = (
    "paddle.nn.GRU's fused backward is wrong for the backward direction when sequence_length is shorter than the "
    "time axis (paddlepaddle 3.3.1, CPU; the per-layer backward of paddle/phi/kernels/cpu/rnn_grad_kernel.cc with "
    "has_sequence_length and the reverse mask): the forward matches, but layer 0 direction 1 gradients differ by up "
    "to 0.52 (W), 0.47 (U), 0.41 (b, c), 0.30 (x), 0.25 (h0); finite differences of paddle's own forward agree with "
    "the reference (d b_z[1]: 0.504193) and not with paddle's autograd (0.177058); unidirectional or full-length "
    "runs agree to 1e-15"
)
# Conversion paths (reports.conversions): keys are (path id, source configuration, dtype, aspect).
TFLITE_DYNAMIC_TENSOR_LIST = (
    "tf.lite.TFLiteConverter (TensorFlow 2.21) refuses every Keras 3 GRU with a dynamic time axis: ConverterError "
    "\"'tf.TensorListReserve' op requires element_shape to be static during TF Lite transformation pass\"; the fix it "
    "suggests (SELECT_TF_OPS with _experimental_lower_tensor_list_ops=False) leaves the GRU to the TF runtime"
)
ONNX_FLOAT16_WEIGHTS = (
    "onnxconverter_common.float16.convert_float_to_float16 (1.16.0) stores the GRU's W/R/B in float16 and onnxruntime "
    "1.32 computes from them: max abs error 8.6e-5 to 4.4e-4 against the float32 source (1.7e-4 to 4.4e-4 on an AVX-512 CPU), the float16 rounding of the "
    "weights; keep_io_types does not change it, keeping the model in float32 does"
)
TORCH_INT8_DYNAMIC = (
    "torch.ao.quantization.quantize_dynamic(nn.GRU, {nn.GRU}, dtype=torch.qint8) stores per-tensor symmetric int8 "
    "weights (observer.py:386, scale max|w|/127.5) and quantizes activations to 7 bits at run time (reduce_range, "
    "ao/nn/quantized/dynamic/modules/rnn.py:444-449): max abs error 1.3e-2 to 1.9e-2; the int8 model of the "
    "reference (reference.precision) reproduces it to 1.2e-7"
)
TORCH_EXPORT_PACKED = (
    "torch.export (torch 2.13, used by torch.onnx.export(dynamo=True) and the torch-export round trip) cannot trace a "
    "PackedSequence: GuardOnDataDependentSymNode on the data-dependent batch sizes of pack_padded_sequence"
)
ONNX2TF_NO_BIAS = "onnx2tf 1.28.8 fails on a GRU without its optional B input: KeyError: '' (onnx2tf/ops/GRU.py:482)"
ONNX2TF_IGNORES_LENGTHS = (
    "onnx2tf 1.28.8 reads the GRU's sequence_lens (onnx2tf/ops/GRU.py:485) but only records it for debugging (:926): "
    "padded steps are computed like real ones; the audit names the mistake 'mask ignored'"
)
OPENVINO_PACKED = "openvino.convert_model (2026.4.1) on a torch PackedSequence GRU: prim::PackPadded is not converted"
OPENVINO_SEQUENCE_LENS = (
    "OpenVINO 2026.4.1 (CPU) runs an ONNX GRU with sequence_lens but the padded steps differ from onnxruntime's "
    "(zeros past each length, Y_h at the last valid step): max abs error 0.475 against the source"
)
OPENVINO_BF16_DEFAULT = (
    "OpenVINO 2026.4.1's CPU plugin compiles float32 models to bfloat16 by default on a CPU with native bf16 "
    "(AVX512_BF16 or AMX; here an AMD EPYC with avx512_bf16): ov.Core().get_property('CPU', INFERENCE_PRECISION_HINT) "
    "reads bf16 before any model is compiled, and the compiled GRU misses the float32 source by 3.7e-3 to 5.1e-3 "
    "(the bfloat16 model of the reference gives 2.0e-3 to 3.5e-3 on the same probes); INFERENCE_PRECISION_HINT='f32' "
    "gives the float32 result back. On a CPU without native bf16 the default is f32 and these cells are exact"
)
EXPECTED_FAILURES: dict[tuple[str, str, str, str], str] = {
    ("keras-tflite", "GRU(reset_after=True)", "float32", "formula"): TFLITE_DYNAMIC_TENSOR_LIST,
    ("onnx-float16", "*", "float32", "precision"): ONNX_FLOAT16_WEIGHTS,
    ("torch-quantize-dynamic", "*", "float32", "precision"): TORCH_INT8_DYNAMIC,
    ("torch-onnx-dynamo", "nn.GRU + PackedSequence", "float32", "formula"): TORCH_EXPORT_PACKED,
    ("torch-export", "nn.GRU + PackedSequence", "float32", "formula"): TORCH_EXPORT_PACKED,
    ("onnx-onnx2tf", "GRU(linear_before_reset=1) without B", "float32", "formula"): ONNX2TF_NO_BIAS,
    ("onnx-onnx2tf", "GRU + sequence_lens", "float32", "formula"): ONNX2TF_IGNORES_LENGTHS,
    ("torch-openvino", "nn.GRU + PackedSequence", "float32", "formula"): OPENVINO_PACKED,
    ("onnx-openvino", "GRU + sequence_lens", "float32", "formula"): OPENVINO_SEQUENCE_LENS,
    **{(f"{path} on bf16 cpu", "*", "float32", "precision"): OPENVINO_BF16_DEFAULT
       for path in ("onnx-openvino", "torch-openvino")},
    **{("paddle", "nn.GRU(num_layers=2, direction='bidirect') + sequence_length", dtype, "gradients"):
       PADDLE_BIDIRECTIONAL_LENGTHS_GRADIENT for dtype in ("float32", "float64")},
    **{("torch-cuda", name, "float32", "gradients"): TORCH_CUDA_TF32 for name in TORCH_CUDA_TF32_ROWS},
    **{(f"{framework} on gpu", pattern, "float32", "gradients"): JAX_GPU_TF32
       for framework, pattern in (("flax", "nnx.*"), ("haiku", "*"), ("equinox", "*"))},
    ("haiku on gpu", "hk.GRU + static_unroll", "float32", "precision"): JAX_GPU_TF32,
    ("keras-jax", "*", "float64", "gradients"): KERAS_JAX_FLOAT32,
    **{("keras-torch", pattern, "float64", "gradients"): KERAS_NON_TF_FLOAT64
       for pattern in ("*mask*", "RNN(GRUCell(*", "*reset_after=False*")},
    **{(framework, "!* + x64", "float64", "gradients"): JAX_DEFAULT_FLOAT32 for framework in ("flax", "haiku", "equinox")},
    **{("torch-cuda", name, "float32", "precision"): TORCH_CUDA_TF32 for name in TORCH_CUDA_TF32_ROWS},
    ("keras-jax", "*", "float64", "precision"): KERAS_JAX_FLOAT32,
    **{("keras-torch", pattern, "float64", "precision"): KERAS_NON_TF_FLOAT64
       for pattern in ("*mask*", "RNN(GRUCell(*", "*reset_after=False*")},
    ("flax", "!* + x64", "float64", "precision"): JAX_DEFAULT_FLOAT32,
    ("haiku", "!* + x64", "float64", "precision"): JAX_DEFAULT_FLOAT32,
    ("equinox", "!* + x64", "float64", "precision"): JAX_DEFAULT_FLOAT32,
    **{("onnxruntime", "*", "float64", aspect): ORT_NO_FLOAT64 for aspect in ("formula", "precision")},
    **{("onnxruntime", "*layout=1*", "float32", aspect): ORT_NO_LAYOUT_1 for aspect in ("formula", "precision")},
    ("onnxruntime", "*ThresholdedRelu*", "float32", "formula"): ORT_THRESHOLDED_RELU,
    **{("onnx-reference", "*sequence_lens*", dtype, "formula"): ONNX_REFERENCE_IGNORES_LENGTHS
       for dtype in ("float32", "float64")},
    **{("onnx-reference", "*activations=*", dtype, "formula"): ONNX_REFERENCE_IGNORES_ACTIVATIONS
       for dtype in ("float32", "float64")},
    ("tf-legacy", "tf.raw_ops.GRUBlockCell", "float64", "formula"): GRU_BLOCK_CELL_FLOAT32_ONLY,
    ("tf-legacy", "tf.raw_ops.GRUBlockCell", "float64", "precision"): GRU_BLOCK_CELL_FLOAT32_ONLY,
    **{("paddle", "nn.GRU(bias_*", dtype, aspect): PADDLE_BIAS_ATTR_CRASH
       for dtype in ("float32", "float64") for aspect in ("formula", "precision")},
}


def _matches(config: str, pattern: str) -> bool:
    if pattern.startswith("!"):
        return not _matches(config, pattern[1:])
    return config == pattern or fnmatchcase(config, pattern)




def expected_failure(framework: str, config: str, dtype: str, aspect: str, device: str = "cpu") -> str | None:
    """The reason row ``(framework, config, dtype)`` deviates in ``aspect`` on ``device``, or None."""
    for (name, pattern, wanted_dtype, wanted_aspect), reason in EXPECTED_FAILURES.items():
        if (name in (framework, f"{framework} on {device}") and (wanted_dtype, wanted_aspect) == (dtype, aspect)
                and _matches(config, pattern)):
            return reason
    return None
