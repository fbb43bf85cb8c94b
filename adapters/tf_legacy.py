"""Legacy TensorFlow GRUs: the TF1 ``GRUCell`` (stepped eagerly, ``dynamic_rnn``, ``MultiRNNCell``,
``bidirectional_dynamic_rnn``), the fused op ``tf.raw_ops.GRUBlockCell``, and Keras 2 (``tf_keras``):
``tf_keras.layers.GRU`` / ``RNN(GRUCell)`` / ``Bidirectional`` and the v1 classes
``tf.compat.v1.keras.layers.GRU`` / ``GRUCell``, with masks, ``go_backwards``, ``time_major`` and stacks.

Everything runs eagerly in this process, beside Keras 3: ``tf_keras`` is its own package (Keras 2.x),
independent of ``keras``. Paths below are in the installed packages (tensorflow 2.21.0, tf_keras 2.21.0).

Where the TF1 names lead today. With Keras 3 installed ``tf.compat.v1.nn.rnn_cell`` is a
``KerasLazyLoader`` (``tensorflow/_api/v2/compat/v1/__init__.py:724-734``): unless ``TF_USE_LEGACY_KERAS=1``
was set before TensorFlow was imported (read at ``:695-696``), ``tf.compat.v1.nn.rnn_cell.GRUCell``
raises ``AttributeError: `GRUCell` is not available with Keras 3.`` (``tensorflow/python/util/lazy_loader.py:205-208``).
With it, the name is ``tf_keras.src.layers.rnn.legacy_cells.GRUCell``
(``tf_keras/api/_v1/keras/__internal__/legacy/rnn_cell/__init__.py:8``), the class used here; the generated
import of TensorFlow's own frozen copy (``tensorflow/python/keras/layers/legacy_rnn/rnn_cell_impl.py:495``,
``tensorflow/_api/v2/compat/v1/nn/rnn_cell/__init__.py:12``) is overridden by that loader. Likewise
``tf.compat.v1.keras.layers.GRU`` is ``tf_keras.src.layers.rnn.gru_v1.GRU``
(``tf_keras/api/_v1/keras/layers/__init__.py:126``) only under ``TF_USE_LEGACY_KERAS=1``.
``tf.compat.v1.nn.dynamic_rnn`` and ``bidirectional_dynamic_rnn`` are TensorFlow's own
(``tensorflow/python/ops/rnn.py:508``, ``:350``) and run eagerly.

TF1 ``GRUCell`` (``tf_keras/src/layers/rnn/legacy_cells.py``):

- claim: the docstring cites Cho et al. 2014 (``:507-510``), whose GRU is z on previous, reset before;
  its deprecation warning says the class "is equivalent as `tf.keras.layers.GRUCell`" (``:524-530``), whose
  default is ``reset_after=True`` (``tf_keras/src/layers/rnn/gru.py:136``): not the same formula, and the
  TF1 layout (gate order r, u; one bias per matmul) cannot even hold a reset-after GRU's ``c_h``;
- computes (``:600-621``): ``[r, u] = sigmoid(concat([x, h]) @ gates/kernel + gates/bias)`` split r then u
  (``:604-610``); ``c = tanh(concat([x, r * h]) @ candidate/kernel + candidate/bias)`` (``:612-619``);
  ``new_h = u * h + (1 - u) * c`` (``:620``): z_on_previous + reset before, as claimed;
- layout (``:569-596``): ``gates/kernel (I + H, 2H)``, rows x then h, columns r|u; ``gates/bias (2H,)`` b_r|b_z,
  initialised to 1.0 unless ``bias_initializer`` is given (``:574-582``); ``candidate/kernel (I + H, H)``, rows
  x then r*h; ``candidate/bias (H,)`` b_h, zeros. Each bias is added once, after its matmul on a
  concatenation, so canonically the class holds the input biases b_z, b_r, b_h and no c_* (for a
  reset-before GRU the c_* fold into them exactly: ``reference.fold_recurrent_biases``); no ``use_bias``;
- ``dynamic_rnn(sequence_length=...)`` copies the state through padding and outputs zeros there
  (docstring ``rnn.py:568-571``); ``bidirectional_dynamic_rnn`` reverses each sequence within its own
  length (``array_ops.reverse_sequence``, ``rnn.py:460-466``), so its backward direction starts at each
  sequence's last valid step, and its outputs are zero at padding too.

``tf.raw_ops.GRUBlockCell`` (one step; stepped over time here): the op's docstring
(``tensorflow/python/ops/gen_rnn_ops.py:543-589``) states ``[r_bar u_bar] = [x, h_prev] * w_ru + b_ru``,
``c = tanh([x, h_prev o r] * w_c + b_c)``, ``h = (1-u) o c + u o h_prev``: the TF1 cell's formula and layout
(``w_ru (I + H, 2H)`` columns r|u, ``w_c (I + H, H)``, ``b_ru (2H,)``, ``b_c (H,)``). The kernel
(``tensorflow/core/kernels/rnn/gru_ops.h``, ``GRUBlockCellFprop``: ``h = u * (h_prev - c) + c``) runs on
CPU; the op is registered for float32 only (``tensorflow/core/ops/rnn_ops.cc:25-26``: ``.Attr("T: {float}")``),
so a float64 run fails with TensorFlow's InvalidArgumentError, reported as the row's error.

Keras 2 (``tf_keras/src/layers/rnn/gru.py``, ``gru_v1.py``): the same weights as Keras 3 (``kernel (I, 3H)``
and ``recurrent_kernel (H, 3H)`` columns z|r|h; ``bias (2, 3H)`` with ``reset_after=True``, else ``(3H,)``,
``gru.py:185-224``), so ``reference.layouts.to_keras``/``from_keras`` hold. ``GRUCell.call`` computes
``h = z * h_tm1 + (1 - z) * hh`` (``gru.py:348``) with the reset after (``:340``) or before (``:342-344``) the
recurrent matmul. ``tf_keras.layers.GRU`` with its defaults (``reset_after=True``, ``recurrent_activation=
"sigmoid"``, ``gru.py:528``, ``:548``) does not run the cell on CPU: ``_could_use_gpu_kernel``
(``gru.py:604-612``) sends it to ``standard_gru`` (``gru.py:909-1015``; ``hh = tf.tanh(x_h + r * recurrent_h)``
``:989``, ``h = z * h_tm1 + (1 - z) * hh`` ``:992``), or to cuDNN when a GPU is visible. The v1 classes default
to ``reset_after=False`` and ``recurrent_activation="hard_sigmoid"`` (``gru_v1.py:217``, ``:236``; cell
``:85``, ``:98``), and Keras 2's hard sigmoid is ``clip(0.2 x + 0.5, 0, 1)`` (``tf_keras/src/backend.py:5926-5944``,
not Keras 3's ``relu6(x + 3) / 6``): those rows model it with ``keras2_hard_sigmoid`` as the reference's gate
activation. Masks: a masked step keeps the state and repeats the previous output (zeros first) unless
``zero_output_for_mask`` (``tf_keras/src/backend.py:5094-5098``), which ``Bidirectional`` forces on when it
returns sequences (``tf_keras/src/layers/rnn/bidirectional.py:162-168``). ``Bidirectional`` rows measure the
merge modes concat and mul; sum and ave are two more lines of the same ``if`` (``bidirectional.py:426-433``),
left out to keep the table fast (eager Keras 2 costs 0.1-0.5 s a row).

Findings, documentation: ``tf_keras.layers.GRU``'s docstring says "The default one is based on v3 and has
reset gate applied to hidden state before matrix multiplication" (``gru.py:419-422``, a paragraph kept from
Keras 2.2), while its ``reset_after`` argument (``:505-506``) and code default to *after*; the rows take the
argument's words as the claim, and the measurement agrees with it. The TF1 cell's "equivalent as
tf.keras.layers.GRUCell" (above) holds only against ``GRUCell(reset_after=False)`` ported with gate order
and biases rearranged.

A float64 request is honoured by every class except ``GRUBlockCell``: ``dtype="float64"`` per layer for Keras 2
(the backend floatx is never changed), ``dtype`` of the TF1 cell, and ``run`` checks that what comes back is
in the requested dtype.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from dataclasses import dataclass

import numpy as np

for _package, _install in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras")):
    if importlib.util.find_spec(_package) is None:
        raise ImportError(f"the tf-legacy adapter needs {_package} (pip install {_install})", name=_install)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up banner is noise in a report

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tf_keras.src.layers.rnn import gru as keras2_gru  # noqa: E402
from tf_keras.src.layers.rnn import gru_v1 as keras2_gru_v1  # noqa: E402
from tf_keras.src.layers.rnn import legacy_cells  # noqa: E402

from reference import Convention, GRUParams, Layers, check_layers, layouts  # noqa: E402
from reference.activations import keras2_hard_sigmoid  # noqa: E402
from reference.equations import sigmoid  # noqa: E402
from reference.params import INPUT_BIASES, RECURRENT_BIASES  # noqa: E402

from .base import Adapter, ForwardResult, LayerConfig  # noqa: E402
from .base import check_run_inputs  # noqa: E402
from .keras_backends import check_parameters, dtype_name, keras_layout  # noqa: E402

FRAMEWORK = "tf-legacy"
TF_VERSION = tf.__version__
TF_KERAS_VERSION = tf_keras.__version__
BEFORE = Convention("z_on_previous", "before")
AFTER = Convention("z_on_previous", "after")

_LEGACY = f"tf_keras/src/layers/rnn/legacy_cells.py:{{}} (tf_keras {TF_KERAS_VERSION})"
_GRU = f"tf_keras/src/layers/rnn/gru.py:{{}} (tf_keras {TF_KERAS_VERSION})"
_GRU_V1 = f"tf_keras/src/layers/rnn/gru_v1.py:{{}} (tf_keras {TF_KERAS_VERSION})"

TF1_CLAIM = (
    _LEGACY.format("507-510") + ": GRUCell docstring, \"References: Learning Phrase Representations using RNN "
    "Encoder Decoder for Statistical Machine Translation: [Cho et al., 2014]\" (h = z * h_prev + (1 - z) * "
    "h~, h~ = tanh(W x + U (r * h_prev))); the deprecation warning (:524-530) also calls it \"equivalent as "
    "`tf.keras.layers.GRUCell`\", whose default is reset_after=True"
)
TF1_LAYOUT = (
    "per GRUCell: gates/kernel (I + H, 2H), rows x then h, columns r|u (u is z); gates/bias (2H,) b_r|b_z, "
    "initialised to 1.0; candidate/kernel (I + H, H), rows x then r*h; candidate/bias (H,) b_h; "
    "no recurrent biases c_* (legacy_cells.py:569-596)"
)
BLOCK_CLAIM = (
    f"tensorflow/python/ops/gen_rnn_ops.py:571-589 (tensorflow {TF_VERSION}), GRUBlockCell docstring: "
    "[r_bar u_bar] = x_h_prev * w_ru + b_ru; c = tanh(x_h_prevr * w_c + b_c) with x_h_prevr = [x h_prev o r]; "
    "h = (1-u) o c + u o h_prev"
)
BLOCK_LAYOUT = (
    "w_ru (I + H, 2H), rows x then h_prev, columns r|u (u is z); w_c (I + H, H), rows x then h_prev*r; "
    "b_ru (2H,) b_r|b_z (documented initialiser 1.0); b_c (H,) b_h; no recurrent biases c_*; "
    "the op is registered for float32 only (tensorflow/core/ops/rnn_ops.cc:25-26)"
)
KERAS2_CLAIMS = {
    (False, True): _GRU.format("505-506") + ': reset_after "False = \\"before\\", True = \\"after\\" (default and '
    'cuDNN compatible)"; GRUCell.call "h = z * h_tm1 + (1 - z) * hh" (:348). The class docstring (:419-422) '
    'contradicts it: "The default one ... has reset gate applied to hidden state before matrix multiplication"',
    (False, False): _GRU.format("505-506") + ': reset_after "False = \\"before\\""; GRUCell.call reset before '
    '"backend.dot(r * h_tm1, self.recurrent_kernel[:, 2 * self.units :])" (:342-344), "h = z * h_tm1 + (1 - z) '
    '* hh" (:348)',
    (True, False): _GRU_V1.format("196-197") + ': reset_after "False = \\"before\\" (default), True = \\"after\\"", '
    'class docstring (:127-129) "The default one is based on 1406.1078v3 and has reset gate applied to hidden '
    'state before matrix multiplication"; recurrent_activation "Default: hard sigmoid" (:217)',
    (True, True): _GRU_V1.format("196-197") + ': reset_after "True = \\"after\\" (cuDNN compatible)"; computed by '
    "tf_keras/src/layers/rnn/gru.py GRUCell.call (:340, :348)",
}
STANDARD_GRU = (
    "; on CPU this row runs standard_gru, not the cell (" + _GRU.format("604-612") + " _could_use_gpu_kernel, "
    'standard_gru :989 "hh = tf.tanh(x_h + r * recurrent_h)", :992 "h = z * h_tm1 + (1 - z) * hh")'
)
HARD_SIGMOID_NOTE = (
    "; gates use Keras 2's hard_sigmoid clip(0.2 x + 0.5, 0, 1) (tf_keras/src/backend.py:5926-5944), "
    "modelled in the reference by adapters.tf_legacy.keras2_hard_sigmoid"
)
TF1_ZERO_PADDING = (
    "padded steps keep the state; the output there is zeros (tensorflow/python/ops/rnn.py:568-571: "
    "\"copy-through state and zero-out outputs when past a batch element's sequence length\")"
)


# Gate activations the Keras 2 rows can model, told apart by evaluating a layer's function on a grid.
ACTIVATION_GRID = np.concatenate([np.linspace(-8.0, 8.0, 33), [-2.6, -2.4, -0.3, -0.01, 0.01, 0.3, 2.4, 2.6]])
ACTIVATION_ATOL = 1e-6
GATE_ACTIVATIONS = {"sigmoid": sigmoid, "hard_sigmoid": keras2_hard_sigmoid}


@contextlib.contextmanager
def _quiet():
    """The TF1 API warns on every construction and call that it is deprecated; the report needs none of it."""
    try:
        from tensorflow.python.util import deprecation

        silence = deprecation.silence()
    except (ImportError, AttributeError):
        silence = contextlib.nullcontext()
    logger = tf.get_logger()  # MultiRNNCell's deprecation notice goes through TF's logger (legacy_cells.py:1208)
    level = logger.level
    logger.setLevel("ERROR")
    try:
        with warnings.catch_warnings(), silence:
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


# ----------------------------------------------------------------- the TF1 layout (cell and block op)


def to_tf1(params: GRUParams) -> dict[str, np.ndarray]:
    """``gates/kernel``, ``gates/bias``, ``candidate/kernel``, ``candidate/bias`` (also ``w_ru, b_ru, w_c, b_c``
    of ``GRUBlockCell``). Recurrent biases have no slot: non-zero ``c_*`` are refused, naming them."""
    nonzero = [name for name in RECURRENT_BIASES if np.any(getattr(params, name) != 0)]
    if nonzero:
        raise ValueError(
            f"non-zero biases {', '.join(nonzero)}, which the TF1 GRU layout cannot hold: it adds one bias after "
            f"each matmul on a concatenation (gates/bias b_r|b_z, candidate/bias b_h) and has no recurrent biases. "
            f"This formula is reset-before, where they fold into b_* exactly: "
            f"reference.fold_recurrent_biases(params, 'z_on_previous+before')"
        )
    return {
        "gate_kernel": np.concatenate([np.concatenate([params.W_r, params.W_z], axis=1),
                                       np.concatenate([params.U_r, params.U_z], axis=1)], axis=0),
        "gate_bias": np.concatenate([params.b_r, params.b_z]),
        "candidate_kernel": np.concatenate([params.W_h, params.U_h], axis=0),
        "candidate_bias": np.array(params.b_h),
    }


def from_tf1(gate_kernel, gate_bias, candidate_kernel, candidate_bias) -> GRUParams:
    """Canonical parameters from the TF1 layout (``c_*`` zero); shapes are checked and named."""
    gate_kernel, candidate_kernel = np.asarray(gate_kernel), np.asarray(candidate_kernel)
    gate_bias, candidate_bias = np.asarray(gate_bias), np.asarray(candidate_bias)
    if candidate_kernel.ndim != 2 or gate_kernel.ndim != 2:
        raise ValueError(f"gates/kernel has shape {gate_kernel.shape} and candidate/kernel {candidate_kernel.shape}; "
                         f"expected (I + H, 2H) and (I + H, H)")
    hidden = candidate_kernel.shape[1]
    input_size = candidate_kernel.shape[0] - hidden
    expected = {"gates/kernel": ((input_size + hidden, 2 * hidden), gate_kernel),
                "gates/bias": ((2 * hidden,), gate_bias), "candidate/bias": ((hidden,), candidate_bias)}
    for name, (shape, array) in expected.items():
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}; with candidate/kernel {candidate_kernel.shape} "
                             f"(I = {input_size}, H = {hidden}) it must be {shape}")
    if input_size < 1:
        raise ValueError(f"candidate/kernel has shape {candidate_kernel.shape}: no input features "
                         f"(it has I + H rows and H columns)")
    zeros = np.zeros(hidden, candidate_kernel.dtype)
    return GRUParams(
        W_r=gate_kernel[:input_size, :hidden], W_z=gate_kernel[:input_size, hidden:], W_h=candidate_kernel[:input_size],
        U_r=gate_kernel[input_size:, :hidden], U_z=gate_kernel[input_size:, hidden:], U_h=candidate_kernel[input_size:],
        b_r=gate_bias[:hidden], b_z=gate_bias[hidden:], b_h=candidate_bias, c_z=zeros, c_r=zeros, c_h=zeros,
    )


# ----------------------------------------------------------------- the configuration table


TF1_EQUIVALENCE_CLAIM = (
    "the TF1 GRUCell's deprecation warning says it \"is equivalent as tf.keras.layers.GRUCell\" "
    "(tf_keras/src/layers/rnn/legacy_cells.py:524-530), but it computes reset before (:600-621) while "
    "tf.keras.layers.GRUCell defaults to reset_after=True: on the same weights they differ by 0.15; it equals "
    "GRUCell(reset_after=False) to 1.7e-16"
)
KERAS2_DOC_CONTRADICTION = (
    "tf_keras.layers.GRU's class docstring says \"The default one ... has reset gate applied to hidden state before "
    "matrix multiplication\" (tf_keras/src/layers/rnn/gru.py:419-422), but the default is reset_after=True "
    "(:548, argument doc :505-506), and reset after is what runs"
)


def _tf1(name: str, runner: str, time_major: bool = False, **fields) -> LayerConfig:
    layout = TF1_LAYOUT
    if fields.get("num_layers", 1) > 1:
        layout = (f"MultiRNNCell of {fields['num_layers']} GRUCells, state tuple (layer 0, layer 1, ...); "
                  f"each: {layout}; layer k > 0 has I = H")
    if fields.get("bidirectional"):
        layout = f"cell_fw and cell_bw, each: {layout}; states (h_fw, h_bw), outputs concatenated fw|bw"
    return LayerConfig(
        framework=FRAMEWORK, name=name, claimed=BEFORE, separate_recurrent_bias=False, biases=INPUT_BIASES,
        claim_source=TF1_CLAIM, layout=layout, documentation_findings=(TF1_EQUIVALENCE_CLAIM,),
        options=(("family", "tf1"), ("runner", runner), ("time_major", time_major)),
        padding=TF1_ZERO_PADDING if fields.get("masked") else "", masked_output="zero", **fields,
    )


def _keras2(name: str, kind: str = "GRU", v1: bool = False, reset_after: bool | None = None,
            gate: str | None = None, time_major: bool = False, zero_output: bool | None = None,
            **fields) -> LayerConfig:
    """A Keras 2 row. ``reset_after`` / ``gate`` None: the class default, not passed to the constructor
    (so a changed default shows in the measurement); the table records what the default is."""
    explicit = {}
    if reset_after is not None:
        explicit["reset_after"] = reset_after
    if gate is not None:
        explicit["recurrent_activation"] = gate
    reset = explicit.get("reset_after", not v1)
    gate_name = explicit.get("recurrent_activation", "hard_sigmoid" if v1 else "sigmoid")
    bias = fields.get("bias", True)
    bidirectional = fields.get("bidirectional", False)
    masked_output = "zero" if (bidirectional if zero_output is None else zero_output) else "previous_output"
    claim = KERAS2_CLAIMS[(v1, reset)]
    standard_gru = not v1 and kind in ("GRU", "Bidirectional") and reset and bias and gate_name == "sigmoid"
    if standard_gru:
        claim += STANDARD_GRU
    reference_options = ()
    if gate_name == "hard_sigmoid":
        claim += HARD_SIGMOID_NOTE
        reference_options = (("gate_activation", keras2_hard_sigmoid),)
    return LayerConfig(
        framework=FRAMEWORK, name=name, claimed=CLAIMED_KERAS2[reset], separate_recurrent_bias=reset,
        masked_output=masked_output,
        biases=((INPUT_BIASES + RECURRENT_BIASES if reset else INPUT_BIASES) if bias else ()),
        claim_source=claim,
        layout=keras_layout(reset, bias, fields.get("num_layers", 1), bidirectional, fields.get("merge", "concat")),
        options=(("family", "keras2"), ("kind", kind), ("v1", v1), ("reset_after", reset), ("gate", gate_name),
                 ("time_major", time_major), ("explicit", tuple(sorted(explicit.items())))),
        reference_options=reference_options,
        documentation_findings=(KERAS2_DOC_CONTRADICTION,) if not v1 and reset and "reset_after" not in name else (),
        **fields,
    )


CLAIMED_KERAS2 = {True: AFTER, False: BEFORE}

K2 = "tf_keras.layers"
K1 = "tf.compat.v1.keras.layers"


def _configurations() -> list[LayerConfig]:
    masked = {"masked": True}
    return [
        # TF1 GRUCell
        _tf1("tf.compat.v1.nn.rnn_cell.GRUCell", "steps"),
        _tf1("tf.compat.v1.nn.dynamic_rnn(GRUCell)", "dynamic_rnn"),
        _tf1("tf.compat.v1.nn.dynamic_rnn(GRUCell, time_major=True)", "dynamic_rnn", time_major=True),
        _tf1("tf.compat.v1.nn.dynamic_rnn(GRUCell) + sequence_length", "dynamic_rnn", **masked),
        _tf1("tf.compat.v1.nn.dynamic_rnn(MultiRNNCell([GRUCell, GRUCell]))", "dynamic_rnn", num_layers=2),
        _tf1("tf.compat.v1.nn.bidirectional_dynamic_rnn(GRUCell, GRUCell)", "bidirectional_dynamic_rnn",
             bidirectional=True),
        _tf1("tf.compat.v1.nn.bidirectional_dynamic_rnn(GRUCell, GRUCell) + sequence_length",
             "bidirectional_dynamic_rnn", bidirectional=True, **masked),
        # the fused op
        LayerConfig(
            framework=FRAMEWORK, name="tf.raw_ops.GRUBlockCell", claimed=BEFORE, separate_recurrent_bias=False,
            biases=INPUT_BIASES, claim_source=BLOCK_CLAIM, layout=BLOCK_LAYOUT,
            options=(("family", "block"), ("runner", "steps")),
        ),
        # Keras 2, the TF2 classes
        _keras2(f"{K2}.GRU"),
        _keras2(f"{K2}.GRU(reset_after=False)", reset_after=False),
        _keras2(f"{K2}.GRU(use_bias=False)", bias=False),
        _keras2(f"{K2}.GRU + mask", **masked),
        _keras2(f"{K2}.GRU(reset_after=False) + mask", reset_after=False, **masked),
        _keras2(f"{K2}.GRU(go_backwards=True) + mask", reverse=True, **masked),
        _keras2(f"{K2}.GRU(time_major=True)", time_major=True),
        _keras2(f"{K2}.GRU(return_sequences=False)", returns_sequences=False),
        _keras2(f"{K2}.RNN(GRUCell)", kind="RNN(GRUCell)"),
        _keras2(f"[{K2}.GRU, GRU]", num_layers=2),
        *[_keras2(f"{K2}.Bidirectional(GRU, merge_mode={merge!r})", kind="Bidirectional", bidirectional=True,
                  merge=merge) for merge in ("concat", "mul")],
        _keras2(f"{K2}.Bidirectional(GRU) + mask", kind="Bidirectional", bidirectional=True, **masked),
        _keras2(f"[{K2}.Bidirectional(GRU), Bidirectional(GRU)]", kind="Bidirectional", bidirectional=True,
                num_layers=2),
        # Keras 2, the v1 classes (tf.compat.v1.keras under TF_USE_LEGACY_KERAS=1)
        _keras2(f"{K1}.GRU", v1=True),
        _keras2(f"{K1}.GRU(reset_after=True, recurrent_activation='sigmoid')", v1=True, reset_after=True,
                gate="sigmoid"),
        _keras2(f"{K1}.GRU + mask", v1=True, **masked),
        _keras2(f"{K1}.GRU(go_backwards=True)", v1=True, reverse=True),
        _keras2(f"{K1}.RNN(GRUCell)", kind="RNN(GRUCell)", v1=True),
        _keras2(f"{K1}.Bidirectional(GRU) + mask", kind="Bidirectional", v1=True, bidirectional=True, **masked),
    ]


# ----------------------------------------------------------------- the framework objects


@dataclass(eq=False)
class TF1GRU:
    """A TF1 ``GRUCell`` (or ``MultiRNNCell`` of them, or a forward/backward pair) and how it is run:
    ``runner`` is ``"steps"`` (the cell called once a step, eagerly), ``"dynamic_rnn"`` or
    ``"bidirectional_dynamic_rnn"``; ``config`` is the row it was built for."""

    config: LayerConfig
    cell: object
    cell_bw: object | None = None

    def __repr__(self) -> str:
        return f"TF1GRU({self.config.name})"


@dataclass(frozen=True, eq=False)
class GRUBlockCellWeights:
    """The four weight tensors ``tf.raw_ops.GRUBlockCell`` takes (there is no layer object), as read-only arrays."""

    w_ru: np.ndarray
    w_c: np.ndarray
    b_ru: np.ndarray
    b_c: np.ndarray

    def __post_init__(self) -> None:
        for name in ("w_ru", "w_c", "b_ru", "b_c"):
            array = np.array(getattr(self, name), copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        from_tf1(self.w_ru, self.b_ru, self.w_c, self.b_c)  # shapes, checked and named

    @property
    def hidden_size(self) -> int:
        return self.w_c.shape[1]

    @property
    def input_size(self) -> int:
        return self.w_c.shape[0] - self.w_c.shape[1]

    def __repr__(self) -> str:
        return f"GRUBlockCellWeights(input_size={self.input_size}, hidden_size={self.hidden_size}, {self.w_c.dtype})"


def _is_tf1_cell(obj) -> bool:
    return isinstance(obj, legacy_cells.GRUCell)


def _tf1_cells(cell) -> list:
    if isinstance(cell, legacy_cells.MultiRNNCell):
        cells = list(cell._cells)
        bad = [type(c).__name__ for c in cells if not _is_tf1_cell(c)]
        if bad:
            raise TypeError(f"the MultiRNNCell holds {', '.join(bad)}, not only TF1 GRUCells")
        if not cell._state_is_tuple:
            raise ValueError("the MultiRNNCell has state_is_tuple=False; this adapter runs tuple states only")
        return cells
    if _is_tf1_cell(cell):
        return [cell]
    raise TypeError(f"expected a TF1 GRUCell (tf.compat.v1.nn.rnn_cell.GRUCell) or a MultiRNNCell of them, "
                    f"got {type(cell).__name__}")


def _check_tf1_cell_built(cell) -> None:
    if not cell.built:
        raise ValueError(f"TF1 GRUCell {cell.name!r} is not built, so it has no weights yet: call it once on an "
                         f"input, or cell.build((None, input_size))")


# The cell's variables (legacy_cells.py:569-596) and their keys in ``to_tf1``'s result, in from_tf1's order.
TF1_VARIABLES = (("_gate_kernel", "gate_kernel"), ("_gate_bias", "gate_bias"),
                 ("_candidate_kernel", "candidate_kernel"), ("_candidate_bias", "candidate_bias"))


def _read_tf1(cell) -> GRUParams:
    """Canonical parameters of one built TF1 GRUCell (copies)."""
    _tf1_cells(cell)
    _check_tf1_cell_built(cell)
    return from_tf1(*(np.array(getattr(cell, attribute).numpy(), copy=True) for attribute, _ in TF1_VARIABLES))


def _check_tanh(owner: str, function) -> None:
    observed = np.asarray(function(tf.constant(ACTIVATION_GRID, tf.float64)), np.float64)
    if np.abs(observed - np.tanh(ACTIVATION_GRID)).max() > ACTIVATION_ATOL:
        raise ValueError(f"{owner}: its candidate activation {getattr(function, '__name__', function)!r} does not "
                         f"compute tanh; the conventions compared here use tanh")


def _gate_name(owner: str, function) -> str:
    """'sigmoid' or 'hard_sigmoid' (Keras 2's), by what ``function`` computes; anything else is refused."""
    observed = np.asarray(function(tf.constant(ACTIVATION_GRID, tf.float64)), np.float64)
    for name, exact in GATE_ACTIVATIONS.items():
        if np.abs(observed - exact(ACTIVATION_GRID.copy())).max() <= ACTIVATION_ATOL:
            return name
    raise ValueError(f"{owner}: recurrent_activation {getattr(function, '__name__', function)!r} computes neither "
                     f"sigmoid nor Keras 2's hard_sigmoid clip(0.2 x + 0.5, 0, 1); rebuild it with one of those")


# ----------------------------------------------------------------- Keras 2 objects

_K2_RNN = tf_keras.layers.RNN
_K2_BIDIRECTIONAL = tf_keras.layers.Bidirectional
_K2_GRU_CELLS = (keras2_gru.GRUCell,)  # gru_v1.GRUCell subclasses it


def _layer_name(layer) -> str:
    return f"{type(layer).__module__.split('.')[0]} {type(layer).__name__} layer {getattr(layer, 'name', '?')!r}"


def _keras2_subs(layer) -> list:
    """The Keras 2 recurrent layers of ``layer`` in order: itself, or a list's / Sequential's layers."""
    if isinstance(layer, (list, tuple, tf_keras.Sequential)):
        inner = layer.layers if isinstance(layer, tf_keras.Sequential) else list(layer)
        inner = [sub for sub in inner if not isinstance(sub, tf_keras.layers.InputLayer)]
        if not inner:
            raise ValueError("the stack holds no layers")
        for sub in inner:
            if not isinstance(sub, (_K2_RNN, _K2_BIDIRECTIONAL)):
                raise TypeError(f"a GRU stack may hold only tf_keras GRU/RNN/Bidirectional layers, found "
                                f"{type(sub).__module__}.{type(sub).__name__}")
        return inner
    if isinstance(layer, (_K2_RNN, _K2_BIDIRECTIONAL)):
        return [layer]
    hint = " (Keras 3 layers: adapters.get('keras'))" if type(layer).__module__.startswith("keras.") else ""
    raise TypeError(
        f"not a tf-legacy object: got {type(layer).__module__}.{type(layer).__name__}{hint}; this adapter takes a TF1 "
        f"GRUCell or MultiRNNCell of them (tf_keras.src.layers.rnn.legacy_cells), what its build() returns "
        f"(TF1GRU, GRUBlockCellWeights), or tf_keras GRU / RNN(GRUCell) / Bidirectional layers or a list of them"
    )


def _directions(sub) -> list:
    return [sub.forward_layer, sub.backward_layer] if isinstance(sub, _K2_BIDIRECTIONAL) else [sub]


def _keras2_cell(rnn):
    cell = rnn.cell
    if not isinstance(cell, _K2_GRU_CELLS):
        raise TypeError(f"{_layer_name(rnn)} wraps a {type(cell).__name__}, not a tf_keras GRUCell")
    _check_tanh(_layer_name(rnn), cell.activation)
    _gate_name(_layer_name(rnn), cell.recurrent_activation)
    return cell


def _check_keras2_runnable(subs) -> None:
    for index, sub in enumerate(subs):
        rnns = _directions(sub)
        if not sub.built or any(not rnn.cell.built for rnn in rnns):
            raise ValueError(f"{_layer_name(sub)} is not built, so it has no weights yet: call it once on an input "
                             f"or layer.build((None, None, input_size))")
        for rnn in rnns:
            _keras2_cell(rnn)
            if rnn.stateful:
                raise ValueError(f"{_layer_name(rnn)} is stateful=True: running it here would overwrite its stored "
                                 f"state; compare a stateful=False copy (extract, then build)")
        if isinstance(sub, _K2_BIDIRECTIONAL) and sub.merge_mode not in ("concat", "sum", "ave", "mul"):
            raise ValueError(f"{_layer_name(sub)} has merge_mode={sub.merge_mode!r}; use concat, sum, ave or mul")
        if not rnns[0].return_state:
            raise ValueError(f"{_layer_name(sub)} was built with return_state=False; build it with return_state=True "
                             f"so its final state can be compared")
        if index < len(subs) - 1 and not rnns[0].return_sequences:
            raise ValueError(f"{_layer_name(sub)} returns no sequence but feeds another layer")
        if getattr(rnns[0], "time_major", False) and len(subs) > 1:
            raise ValueError("a stack of time_major layers is not supported here; compare each layer separately")


# ----------------------------------------------------------------- the adapter


class TFLegacyAdapter(Adapter):
    name = FRAMEWORK

    def versions(self) -> dict[str, str]:
        return {"tensorflow": TF_VERSION, "tf_keras": TF_KERAS_VERSION}

    def configurations(self) -> list[LayerConfig]:
        return _configurations()

    # ------------------------------------------------------------- building

    def build(self, config: LayerConfig, layers: Layers, dtype):
        if config.framework != FRAMEWORK:
            raise ValueError(f"{config.label} is not a {FRAMEWORK} configuration; "
                             f"use adapters.get('{FRAMEWORK}').configuration(name)")
        family = config.option("family")
        if family == "keras2":
            return self._build_keras2(config, layers, check_parameters(config, layers, dtype))
        num_layers, directions = check_layers(layers, config.merge)
        if (num_layers, directions) != (config.num_layers, config.directions):
            raise ValueError(f"{config.label} needs {config.num_layers} layer(s) x {config.directions} direction(s), "
                             f"the parameters have {num_layers} x {directions}")
        dtype = dtype_name(dtype)
        packed = []
        for index, layer in enumerate(layers):
            for direction, params in enumerate(layer):
                try:
                    packed.append(to_tf1(params.astype(dtype)))
                except ValueError as error:
                    raise ValueError(f"layers[{index}][{direction}] has {error}") from None
        if family == "block":
            first = packed[0]
            return GRUBlockCellWeights(first["gate_kernel"], first["candidate_kernel"], first["gate_bias"],
                                       first["candidate_bias"])
        cells = [self._tf1_cell(weights, dtype) for weights in packed]
        if config.num_layers > 1:
            with _quiet():
                return TF1GRU(config, legacy_cells.MultiRNNCell(cells))
        return TF1GRU(config, cells[0], cells[1] if config.bidirectional else None)

    @staticmethod
    def _tf1_cell(weights: dict[str, np.ndarray], dtype: str):
        hidden = weights["candidate_kernel"].shape[1]
        with _quiet():
            cell = legacy_cells.GRUCell(hidden, dtype=dtype)
            cell.build(tf.TensorShape([None, weights["candidate_kernel"].shape[0] - hidden]))
        for attribute, key in TF1_VARIABLES:
            getattr(cell, attribute).assign(weights[key])
        for attribute, key in TF1_VARIABLES:
            held = getattr(cell, attribute).numpy()
            if held.dtype != weights[key].dtype or not np.array_equal(held, weights[key]):
                raise RuntimeError(f"TF1 GRUCell {attribute} does not hold the loaded weights bit for bit "
                                   f"({held.dtype} vs {weights[key].dtype})")
        return cell

    def _build_keras2(self, config: LayerConfig, layers: Layers, dtype: str):
        built = []
        for layer_params in layers:
            layer = self._new_keras2_layer(config, layer_params[0].hidden_size, dtype)
            layer.build((None, None, layer_params[0].input_size))
            for rnn, params in zip(_directions(layer), layer_params):
                weights = [w.astype(dtype) for w in layouts.to_keras(params, reset_after=config.option("reset_after"),
                                                                     use_bias=config.bias)]
                rnn.set_weights(weights)
                held = rnn.get_weights()
                if any(h.dtype != w.dtype or not np.array_equal(h, w) for h, w in zip(held, weights, strict=True)):
                    raise RuntimeError(f"{_layer_name(rnn)} does not hold the loaded weights bit for bit")
            built.append(layer)
        return built[0] if len(built) == 1 else built

    @staticmethod
    def _new_keras2_layer(config: LayerConfig, units: int, dtype: str):
        v1 = config.option("v1")
        explicit = dict(config.option("explicit"))
        cell_options = dict(use_bias=config.bias, kernel_initializer="zeros", recurrent_initializer="zeros",
                            bias_initializer="zeros", **explicit)
        common = dict(return_sequences=config.returns_sequences, return_state=True, dtype=dtype)
        kind = config.option("kind")
        if kind == "RNN(GRUCell)":
            cell_class = keras2_gru_v1.GRUCell if v1 else keras2_gru.GRUCell
            return _K2_RNN(cell_class(units, dtype=dtype, **cell_options), go_backwards=config.reverse, **common)
        gru_class = keras2_gru_v1.GRU if v1 else keras2_gru.GRU
        gru = gru_class(units, go_backwards=config.reverse, time_major=config.option("time_major"), **cell_options,
                        **common)
        if kind == "Bidirectional":
            return _K2_BIDIRECTIONAL(gru, merge_mode=config.merge, dtype=dtype)
        return gru

    # ------------------------------------------------------------- extracting and describing

    def extract(self, layer) -> list[list[GRUParams]]:
        if isinstance(layer, GRUBlockCellWeights):
            return [[from_tf1(layer.w_ru, layer.b_ru, layer.w_c, layer.b_c)]]
        if isinstance(layer, TF1GRU) or _is_tf1_cell(layer) or isinstance(layer, legacy_cells.MultiRNNCell):
            wrapped = self._as_tf1(layer)
            if wrapped.cell_bw is not None:
                return [[_read_tf1(wrapped.cell), _read_tf1(wrapped.cell_bw)]]
            return [[_read_tf1(cell)] for cell in _tf1_cells(wrapped.cell)]
        stack = []
        for sub in _keras2_subs(layer):
            if not sub.built:
                raise ValueError(f"{_layer_name(sub)} is not built, so it has no weights yet")
            directions = []
            for rnn in _directions(sub):
                cell = _keras2_cell(rnn)
                kernel, recurrent_kernel, *bias = [np.array(w, copy=True) for w in cell.get_weights()]
                directions.append(layouts.from_keras(kernel, recurrent_kernel, bias[0] if bias else None,
                                                     reset_after=cell.reset_after))
            stack.append(directions)
        return stack

    def describe(self, layer) -> LayerConfig:
        if isinstance(layer, GRUBlockCellWeights):
            return self.configuration("tf.raw_ops.GRUBlockCell")
        if isinstance(layer, TF1GRU) or _is_tf1_cell(layer) or isinstance(layer, legacy_cells.MultiRNNCell):
            return self._as_tf1(layer).config
        subs = _keras2_subs(layer)
        first = subs[0]
        bidirectional = isinstance(first, _K2_BIDIRECTIONAL)
        rnn = _directions(first)[0]
        cell = _keras2_cell(rnn)
        v1 = isinstance(cell, keras2_gru_v1.GRUCell)
        gate = _gate_name(_layer_name(rnn), cell.recurrent_activation)
        kind = "Bidirectional" if bidirectional else ("GRU" if isinstance(rnn, (keras2_gru.GRU, keras2_gru_v1.GRU))
                                                      else "RNN(GRUCell)")
        name = (f"{type(layer).__name__}({type(first).__name__}, units={cell.units}, reset_after={cell.reset_after}, "
                f"recurrent_activation={gate!r}, layers={len(subs)}, bidirectional={bidirectional}"
                f"{', v1' if v1 else ''})")
        return _keras2(
            name, kind=kind, v1=v1, reset_after=cell.reset_after, gate=gate,
            time_major=bool(getattr(rnn, "time_major", False)),
            zero_output=first.return_sequences if bidirectional else rnn.zero_output_for_mask,
            num_layers=len(subs), bidirectional=bidirectional, bias=cell.use_bias,
            reverse=bool(rnn.go_backwards) and not bidirectional,
            merge=first.merge_mode if bidirectional else "concat",
            returns_sequences=bool(_directions(subs[-1])[0].return_sequences),
        )

    def _as_tf1(self, layer) -> TF1GRU:
        """A user's own TF1 cell, wrapped: a GRUCell is stepped, a MultiRNNCell runs through dynamic_rnn."""
        if isinstance(layer, TF1GRU):
            return layer
        cells = _tf1_cells(layer)
        if len(cells) == 1 and _is_tf1_cell(layer):
            return TF1GRU(self.configuration("tf.compat.v1.nn.rnn_cell.GRUCell"), layer)
        config = _tf1(f"tf.compat.v1.nn.dynamic_rnn(MultiRNNCell([GRUCell] * {len(cells)}))", "dynamic_rnn",
                      num_layers=len(cells))
        return TF1GRU(config, layer)

    # ------------------------------------------------------------- running

    def run(self, layer, x, h0=None, mask=None) -> ForwardResult:
        if isinstance(layer, GRUBlockCellWeights):
            return self._run_block(layer, x, h0, mask)
        if isinstance(layer, TF1GRU) or _is_tf1_cell(layer) or isinstance(layer, legacy_cells.MultiRNNCell):
            return self._run_tf1(self._as_tf1(layer), x, h0, mask)
        return self._run_keras2(layer, x, h0, mask)

    @staticmethod
    def _result(outputs, h_last, dtype: str, what: str) -> ForwardResult:
        outputs = None if outputs is None else np.ascontiguousarray(np.asarray(outputs))
        h_last = np.ascontiguousarray(np.asarray(h_last))
        returned = {a.dtype.name for a in (outputs, h_last) if a is not None}
        if returned != {dtype}:
            raise TypeError(f"{what} was asked to compute in {dtype} but returned {', '.join(sorted(returned))}")
        return ForwardResult(outputs, h_last)

    def _run_block(self, weights: GRUBlockCellWeights, x, h0, mask) -> ForwardResult:
        dtype = weights.w_c.dtype.name
        x, h0, mask = check_run_inputs(x, h0, mask, input_size=weights.input_size, hidden_size=weights.hidden_size,
                                       slots=1, dtype=dtype, what="tf.raw_ops.GRUBlockCell")
        if mask is not None:
            raise ValueError("tf.raw_ops.GRUBlockCell computes one step and has no notion of padding; "
                             "run it without a mask")
        if not hasattr(tf.raw_ops, "GRUBlockCell"):
            raise RuntimeError(f"tf.raw_ops has no GRUBlockCell in tensorflow {TF_VERSION}")
        h = tf.constant(np.zeros((x.shape[0], weights.hidden_size), dtype) if h0 is None else h0[0])
        w_ru, w_c, b_ru, b_c = (tf.constant(a) for a in (weights.w_ru, weights.w_c, weights.b_ru, weights.b_c))
        outputs = []
        try:
            for t in range(x.shape[1]):
                h = tf.raw_ops.GRUBlockCell(x=tf.constant(x[:, t]), h_prev=h, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c).h
                outputs.append(h)
        except tf.errors.OpError as error:
            said = error.message.splitlines()[0].strip()
            if dtype != "float32" and "attr 'T'" in said:
                raise TypeError(
                    f"tf.raw_ops.GRUBlockCell cannot compute in {dtype}; TensorFlow {TF_VERSION} says: {said} (the op "
                    f"is registered with .Attr(\"T: {{float}}\"), tensorflow/core/ops/rnn_ops.cc:25-26: float32 only)"
                ) from None
            raise RuntimeError(
                f"tf.raw_ops.GRUBlockCell failed on this machine ({type(error).__name__}): {said}"
            ) from None
        return self._result(np.stack([o.numpy() for o in outputs], axis=1), h.numpy()[None], dtype,
                            "tf.raw_ops.GRUBlockCell")

    def _check_tf1(self, wrapped: TF1GRU, x, h0, mask):
        """``(cells, all_cells, dtype, x, h0, mask)`` once the cells and ``run``'s arguments are checked
        (``h0=None`` becomes zeros: what the TF1 runners start from)."""
        config = wrapped.config
        cells = _tf1_cells(wrapped.cell)
        all_cells = cells + ([wrapped.cell_bw] if wrapped.cell_bw is not None else [])
        for cell in all_cells:
            _check_tf1_cell_built(cell)
            _check_tanh(f"TF1 GRUCell {cell.name!r}", cell._activation)
        first = cells[0]
        hidden = first._num_units
        dtype = first._gate_kernel.dtype.name
        x, h0, mask = check_run_inputs(
            x, h0, mask, input_size=first._candidate_kernel.shape[0] - hidden, hidden_size=hidden,
            slots=len(all_cells), dtype=dtype, what=config.label,
        )
        if h0 is None:
            h0 = np.zeros((len(all_cells), x.shape[0], hidden), dtype)
        if config.option("runner") == "steps" and mask is not None:
            raise ValueError("a TF1 GRUCell stepped by itself has no notion of padding; run it without a mask, "
                             "or through dynamic_rnn with sequence_length")
        return cells, all_cells, dtype, x, h0, mask

    @staticmethod
    def _tf1_forward(wrapped: TF1GRU, cells, x_t, h0_t, mask):
        """The TF1 runner on tensors: ``(outputs (batch, time, features), h_last (slots, batch, hidden))``,
        both tensors (so a ``tf.GradientTape`` can follow them), outputs in batch-major input order."""
        config = wrapped.config
        runner = config.option("runner")
        lengths = None if mask is None else tf.constant(mask.sum(axis=1).astype(np.int32))
        if runner == "steps":
            h = h0_t[0]
            outputs = []
            with _quiet():
                for t in range(x_t.shape[1]):
                    output, h = cells[0](x_t[:, t], h)
                    outputs.append(output)
            return tf.stack(outputs, axis=1), h[None]
        time_major = bool(config.option("time_major"))
        inputs = tf.transpose(x_t, [1, 0, 2]) if time_major else x_t
        with _quiet():
            if runner == "dynamic_rnn":
                initial = tuple(h0_t[k] for k in range(len(cells))) if len(cells) > 1 else h0_t[0]
                outputs, state = tf.compat.v1.nn.dynamic_rnn(
                    wrapped.cell, inputs, sequence_length=lengths, initial_state=initial, time_major=time_major)
                finals = list(state) if len(cells) > 1 else [state]
            elif runner == "bidirectional_dynamic_rnn":
                (out_fw, out_bw), (state_fw, state_bw) = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                    wrapped.cell, wrapped.cell_bw, inputs, sequence_length=lengths,
                    initial_state_fw=h0_t[0], initial_state_bw=h0_t[1], time_major=time_major)
                outputs = tf.concat([out_fw, out_bw], axis=-1)
                finals = [state_fw, state_bw]
            else:
                raise ValueError(f"unknown TF1 runner {runner!r}")
        if time_major:
            outputs = tf.transpose(outputs, [1, 0, 2])
        return outputs, tf.stack(finals)

    def _run_tf1(self, wrapped: TF1GRU, x, h0, mask) -> ForwardResult:
        cells, _, dtype, x, h0, mask = self._check_tf1(wrapped, x, h0, mask)
        outputs, h_last = self._tf1_forward(wrapped, cells, tf.constant(x), tf.constant(h0), mask)
        return self._result(outputs.numpy(), h_last.numpy(), dtype, wrapped.config.label)

    @staticmethod
    def _check_keras2(layer, x, h0, mask):
        """``(subs, dtype, what, x, h0, mask)`` once the stack and ``run``'s arguments are checked."""
        subs = _keras2_subs(layer)
        _check_keras2_runnable(subs)
        cells = [_directions(sub)[0].cell for sub in subs]
        if any(cell.units != cells[0].units for cell in cells):
            raise ValueError(f"the stack's layers have different hidden sizes ({[c.units for c in cells]}); "
                             f"compare each layer separately")
        dtype = subs[0].compute_dtype
        what = " -> ".join(_layer_name(sub) for sub in subs)
        x, h0, mask = check_run_inputs(
            x, h0, mask, input_size=int(cells[0].kernel.shape[0]), hidden_size=cells[0].units,
            slots=sum(len(_directions(sub)) for sub in subs), dtype=dtype, what=what,
        )
        return subs, dtype, what, x, h0, mask

    @staticmethod
    def _keras2_forward(subs, x_t, h0_t, mask):
        """The Keras 2 stack on tensors: ``(outputs (batch, time, features) or None, h_last (slots, batch,
        hidden))``, outputs in batch-major input order (``time_major`` and ``go_backwards`` undone)."""
        last = _directions(subs[-1])[0]
        time_major = bool(getattr(_directions(subs[0])[0], "time_major", False))
        sequence = tf.transpose(x_t, [1, 0, 2]) if time_major else x_t
        mask_tensor = None
        if mask is not None:
            mask_tensor = tf.constant(np.ascontiguousarray(mask.T) if time_major else mask)
        finals, slot = [], 0
        for sub in subs:
            rnns = _directions(sub)
            initial = None if h0_t is None else [h0_t[slot + d] for d in range(len(rnns))]
            slot += len(rnns)
            output, *states = sub(sequence, initial_state=initial, mask=mask_tensor)
            finals += states
            sequence = output
        outputs = None
        if last.return_sequences:
            outputs = sequence
            if time_major:
                outputs = tf.transpose(outputs, [1, 0, 2])
            if last.go_backwards and not isinstance(subs[-1], _K2_BIDIRECTIONAL):
                outputs = tf.reverse(outputs, axis=[1])  # go_backwards returns processing order; align with the input
        return outputs, tf.stack(finals)

    def _run_keras2(self, layer, x, h0, mask) -> ForwardResult:
        subs, dtype, what, x, h0, mask = self._check_keras2(layer, x, h0, mask)
        outputs, h_last = self._keras2_forward(subs, tf.constant(x), None if h0 is None else tf.constant(h0), mask)
        return self._result(None if outputs is None else outputs.numpy(), h_last.numpy(), dtype, what)

    # ------------------------------------------------------------- differentiating

    def gradients(self, layer, x, h0=None, mask=None, d_outputs=None, d_h_last=None):
        """``tf.GradientTape`` of ``sum(outputs * d_outputs) + sum(h_last * d_h_last)`` through the very
        forward ``run`` executes (``_tf1_forward`` / ``_keras2_forward``), eagerly.

        The tape watches ``x``, ``h0`` and the weights' variables. TF1 ``GRUCell``: ``gates/kernel``,
        ``gates/bias``, ``candidate/kernel``, ``candidate/bias`` map back through ``from_tf1``, the code that
        reads the weights; each bias is one canonical input bias (``gates/bias`` = b_r|b_z, ``candidate/bias``
        = b_h, added once after the matmul on ``concat([x, h])`` / ``concat([x, r * h])``), so its gradient is
        db_*; the c_* the layout lacks are zeros (not compared; under reset-before they would enter the same
        pre-activations, so their reference gradients equal db_*). Keras 2: ``kernel``, ``recurrent_kernel``,
        ``bias`` map through ``layouts.from_keras`` (``reset_after=False``: one ``(3H,)`` bias = b_*; c_*
        zeros; ``use_bias=False``: all biases zero). ``h0=None`` differentiates at zero initial states.

        ``tf.raw_ops.GRUBlockCell`` raises ``GradientsUnavailable``: TensorFlow registers no gradient for it
        (``tensorflow/python/ops/rnn_grad.py`` registers ``BlockLSTM``/``BlockLSTMV2`` only; the
        ``GRUBlockCellGrad`` kernel exists but its Python gradient registration lived in the removed
        ``tf.contrib.rnn``), measured: the tape raises ``LookupError``.
        """
        from reference.backward import StackGradients

        from .base import GradientsUnavailable

        if isinstance(layer, GRUBlockCellWeights):
            return self._block_gradients(layer, x, h0, mask, d_outputs, d_h_last)
        if isinstance(layer, TF1GRU) or _is_tf1_cell(layer) or isinstance(layer, legacy_cells.MultiRNNCell):
            wrapped = self._as_tf1(layer)
            cells, all_cells, dtype, x, h0, mask = self._check_tf1(wrapped, x, h0, mask)
            variables = [[getattr(cell, attribute) for attribute, _ in TF1_VARIABLES] for cell in all_cells]

            def forward(x_t, h0_t):
                return self._tf1_forward(wrapped, cells, x_t, h0_t, mask)

            def to_canonical(grads):  # a forward/backward pair is one layer; a MultiRNNCell's cells are layers
                if wrapped.cell_bw is not None:
                    return [[from_tf1(*g) for g in grads]]
                return [[from_tf1(*g)] for g in grads]
        else:
            subs, dtype, what, x, h0, mask = self._check_keras2(layer, x, h0, mask)
            if h0 is None:
                h0 = np.zeros((sum(len(_directions(sub)) for sub in subs), x.shape[0],
                               _directions(subs[0])[0].cell.units), dtype)
            rnns = [rnn for sub in subs for rnn in _directions(sub)]
            variables = [[rnn.cell.kernel, rnn.cell.recurrent_kernel] + ([rnn.cell.bias] if rnn.cell.use_bias else [])
                         for rnn in rnns]

            def forward(x_t, h0_t):
                return self._keras2_forward(subs, x_t, h0_t, mask)

            def to_canonical(grads):
                canonical, index = [], 0
                for sub in subs:
                    directions = []
                    for rnn in _directions(sub):
                        kernel, recurrent_kernel, *bias = grads[index]
                        directions.append(layouts.from_keras(kernel, recurrent_kernel, bias[0] if bias else None,
                                                             reset_after=rnn.cell.reset_after))
                        index += 1
                    canonical.append(directions)
                return canonical

        x_t, h0_t = tf.constant(x), tf.constant(h0)
        flat = [v for group in variables for v in group]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([x_t, h0_t, *flat])
            outputs, h_last = forward(x_t, h0_t)
            loss = tf.zeros((), dtype)
            if d_outputs is not None and outputs is not None:
                loss += tf.reduce_sum(outputs * tf.constant(np.asarray(d_outputs, dtype)))
            if d_h_last is not None:
                loss += tf.reduce_sum(h_last * tf.constant(np.asarray(d_h_last, dtype)))
        try:
            found = tape.gradient(loss, [x_t, h0_t, *flat], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        except LookupError as error:  # an op without a registered gradient
            raise GradientsUnavailable(f"TensorFlow {TF_VERSION} cannot differentiate this layer: {error}") from None
        dx, dh0, *rest = [np.array(g) for g in found]
        rest = iter(rest)
        grads = [[next(rest) for _ in group] for group in variables]
        return StackGradients(to_canonical(grads), dx, dh0)

    def _block_gradients(self, weights: GRUBlockCellWeights, x, h0, mask, d_outputs, d_h_last):
        """The tape through the op, stepped as ``_run_block`` steps it; TensorFlow has no gradient for it."""
        from .base import GradientsUnavailable

        self._run_block(weights, x, h0, mask)  # run's checks and errors (float64 is refused by the op itself)
        dtype = weights.w_c.dtype.name
        h = tf.constant(np.zeros((x.shape[0], weights.hidden_size), dtype) if h0 is None else np.asarray(h0)[0])
        tensors = [tf.constant(a) for a in (weights.w_ru, weights.w_c, weights.b_ru, weights.b_c)]
        x_t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch([x_t, h, *tensors])
            h_t, loss = h, tf.zeros((), dtype)
            for t in range(x.shape[1]):
                h_t = tf.raw_ops.GRUBlockCell(x=x_t[:, t], h_prev=h_t, w_ru=tensors[0], w_c=tensors[1],
                                              b_ru=tensors[2], b_c=tensors[3]).h
                if d_outputs is not None:
                    loss += tf.reduce_sum(h_t * tf.constant(np.asarray(d_outputs, dtype)[:, t]))
        try:
            tape.gradient(loss, [x_t, h, *tensors])
        except LookupError as error:
            raise GradientsUnavailable(
                f"TensorFlow {TF_VERSION} registers no gradient for tf.raw_ops.GRUBlockCell (the tape says: {error}); "
                f"tensorflow/python/ops/rnn_grad.py registers BlockLSTM and BlockLSTMV2 only, and the GRUBlockCellGrad "
                f"op's registration lived in tf.contrib.rnn, removed in TensorFlow 2"
            ) from None
        raise RuntimeError("tf.raw_ops.GRUBlockCell now has a registered gradient: map it back to GRUParams "
                           "(adapters/tf_legacy.py _block_gradients)")


def _pin_numerics() -> None:
    """float32 matmuls stay float32 on GPUs (TF32 would round their inputs to 10 mantissa bits)."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


_pin_numerics()
ADAPTER = TFLegacyAdapter()
