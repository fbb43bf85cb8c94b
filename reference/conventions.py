"""The two axes on which published GRU formulas disagree, and the four conventions they span.

Notation (shared by every module of ``reference``):

- ``x_t``: input at step t, ``h_prev``: state before the step, ``h_t``: state after it.
- ``z``: update gate, ``r``: reset gate, ``h_cand``: candidate state.
- ``W_*``: input weights ``(input_size, hidden_size)``; ``U_*``: recurrent weights
  ``(hidden_size, hidden_size)``; ``b_*``: input biases; ``c_*``: recurrent biases.

Update weighting (how ``z`` blends the old state with the candidate):

- ``z_on_previous``:  ``h_t = z * h_prev + (1 - z) * h_cand``  (Cho et al. 2014, PyTorch, Keras, ONNX)
- ``z_on_candidate``: ``h_t = (1 - z) * h_prev + z * h_cand``  (Chung et al. 2014, many tutorials)

Reset placement (where ``r`` meets the recurrent matmul of the candidate):

- ``before``: ``h_cand = tanh(x_t W_h + b_h + (r * h_prev) U_h + c_h)``  (Cho 2014, Keras reset_after=False, ONNX default)
- ``after``:  ``h_cand = tanh(x_t W_h + b_h + r * (h_prev U_h + c_h))``  (PyTorch, cuDNN, Keras default)
"""

from __future__ import annotations

from dataclasses import dataclass

UPDATE_WEIGHTINGS = ("z_on_previous", "z_on_candidate")
RESET_PLACEMENTS = ("before", "after")

_GATES = (
    "z = sigmoid(x_t W_z + b_z + h_prev U_z + c_z)",
    "r = sigmoid(x_t W_r + b_r + h_prev U_r + c_r)",
)
_CANDIDATE = {
    "before": "h_cand = tanh(x_t W_h + b_h + (r * h_prev) U_h + c_h)",
    "after": "h_cand = tanh(x_t W_h + b_h + r * (h_prev U_h + c_h))",
}
_BLEND = {
    "z_on_previous": "h_t = z * h_prev + (1 - z) * h_cand",
    "z_on_candidate": "h_t = (1 - z) * h_prev + z * h_cand",
}


@dataclass(frozen=True, order=True)
class Convention:
    """One GRU formula: an update weighting and a reset placement."""

    update: str
    reset: str

    def __post_init__(self) -> None:
        if self.update not in UPDATE_WEIGHTINGS:
            raise ValueError(
                f"unknown update weighting {self.update!r}; valid: {', '.join(UPDATE_WEIGHTINGS)}"
            )
        if self.reset not in RESET_PLACEMENTS:
            raise ValueError(
                f"unknown reset placement {self.reset!r}; valid: {', '.join(RESET_PLACEMENTS)}"
            )

    @classmethod
    def all(cls) -> tuple["Convention", ...]:
        return tuple(cls(update, reset) for update in UPDATE_WEIGHTINGS for reset in RESET_PLACEMENTS)

    @classmethod
    def from_id(cls, convention_id: str) -> "Convention":
        """Parse ``"z_on_previous+reset_after"`` (the form ``.id`` gives)."""
        for convention in cls.all():
            if convention.id == convention_id:
                return convention
        valid = ", ".join(c.id for c in cls.all())
        raise ValueError(f"unknown convention {convention_id!r}; valid: {valid}")

    @property
    def id(self) -> str:
        return f"{self.update}+reset_{self.reset}"

    @property
    def equations(self) -> tuple[str, str, str, str]:
        return (*_GATES, _CANDIDATE[self.reset], _BLEND[self.update])

    def formula(self) -> str:
        return "\n".join(self.equations)

    def __str__(self) -> str:
        return self.id


def as_convention(value: "Convention | str") -> Convention:
    """Accept a ``Convention`` or its id; anything else is an error naming the valid ids."""
    if isinstance(value, Convention):
        return value
    if isinstance(value, str):
        return Convention.from_id(value)
    valid = ", ".join(c.id for c in Convention.all())
    raise TypeError(f"expected a Convention or one of its ids ({valid}), got {value!r}")
