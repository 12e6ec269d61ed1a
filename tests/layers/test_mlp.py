"""Tests for vocabseg.layers.mlp."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vocabseg.layers.mlp import MLP


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_mlp_layer_count_and_widths(num_layers):
    mlp = MLP(4, 8, 2, num_layers)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    assert linears[0].in_features == 4 and linears[-1].out_features == 2
    assert all(m.out_features == 8 for m in linears[:-1])


def test_mlp_has_relu_between_layers_but_not_after_the_last():
    mlp = MLP(1, 1, 1, 2)
    with torch.no_grad():
        for layer, weight in zip(mlp.layers, (1.0, -1.0)):
            layer.weight.fill_(weight)
            layer.bias.zero_()
    # -relu(x): negative outputs survive the last layer, negative hidden values do not
    torch.testing.assert_close(mlp(torch.tensor([[3.0], [-2.0]])), torch.tensor([[-3.0], [0.0]]))
