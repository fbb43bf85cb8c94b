"""The NumPy oracle: GRU conventions, canonical parameters, layouts and the forward pass.

Imports no deep-learning framework; everything else in the project imports this.
"""

from . import activations, layouts
from .compare import TOLERANCES, Difference, ForwardDifference, compare_forward, tolerance_for
from .conventions import Convention, as_convention
from .equations import sigmoid
from .forward import gru, gru_stack, merge_directions
from .backward import GRUGradients, StackGradients, gru_grad, gru_stack_grad
from .identify import Identification, identify
from .params import GRUParams, Layers, check_layers, random_layers
from .transforms import flip_update_weighting, fold_recurrent_biases

__all__ = [
    "Convention", "as_convention", "GRUParams", "Layers", "check_layers", "random_layers",
    "gru", "gru_stack", "merge_directions", "sigmoid", "layouts", "activations",
    "gru_grad", "gru_stack_grad", "GRUGradients", "StackGradients",
    "flip_update_weighting", "fold_recurrent_biases",
    "identify", "Identification",
    "TOLERANCES", "tolerance_for", "Difference", "ForwardDifference", "compare_forward",
]
