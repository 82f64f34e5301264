"""GM-CNN (seed 003): its default form and layout, zero padding, the error term and the dense layer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models import groups as G  # noqa: E402
from models.equivariance import equivariance_error  # noqa: E402
from models.registry import build_model, default_hparams  # noqa: E402
from tests.test_models import TOL, _one_thread, build_small, sample  # noqa: E402, F401 (autouse fixture)


@pytest.mark.parametrize("error,padding,radius", [(None, "circular", 1), ("direct", "circular", 1),
                                                  ("vector", "zeros", 1), (None, "zeros", 2)])
def test_gmconv_dense_equals_group_diagonals(error: str | None, padding: str, radius: int) -> None:
    from models.gmcnn import GMConv

    torch.manual_seed(0)
    conv = GMConv(3, 2, error=error, radius=radius, padding=padding, grid=6).double()
    with torch.no_grad():
        if conv.error is not None:
            conv.error.normal_()
        if conv.error_vector is not None:
            conv.error_vector.normal_()
        conv.bias.normal_()
    x = torch.randn(2, 3, 4, 6, 6, dtype=torch.float64)
    assert torch.allclose(conv(x), conv.forward_diagonals(x), atol=1e-12)


def test_gmcnn_default_is_seed003_with_zero_padding_and_exact_c4() -> None:
    assert default_hparams("smoke", "gmcnn")["variant"] == "seed003"
    model, x = build_small("smoke", "gmcnn"), sample("smoke", batch=1)
    assert equivariance_error(model, x, "smoke") < TOL  # symmetric zero padding keeps C4 on a square grid
    # zero padding, not circular: a periodic shift of the input is not a periodic shift of the output
    model.eval()
    shifted = model(torch.roll(x, shifts=3, dims=-1))
    assert not torch.allclose(shifted, torch.roll(model(x), shifts=3, dims=-1), atol=1e-6)
    circular = build_small("smoke", "gmcnn", variant="circular", layers=3).eval()
    assert torch.allclose(circular(torch.roll(x, 3, -1)), torch.roll(circular(x), 3, -1), atol=1e-12)
    assert equivariance_error(circular, x, "smoke") < TOL


def test_gmcnn_seed003_layout() -> None:
    from models.gmcnn import GMConv, Pointwise

    model = build_model("smoke", "gmcnn")
    assert isinstance(model.embed, Pointwise) and model.embed.weight.shape == (15, 2)
    assert len(model.convs) == 4 and all(isinstance(c, GMConv) for c in model.convs)
    assert all(c.kappa.shape == (27, 15, 15) and c.padding == "zeros" for c in model.convs)
    assert len(model.acts) == 4 and all(isinstance(a, torch.nn.PReLU) for a in model.acts)
    assert model.head.weight.shape == (2, 15) and model.head.bias is None


def test_gmcnn_seed003_error_term_equals_its_formula() -> None:
    from models.gmcnn import GMConv

    # hand-computed: one coefficient eps = 2, v = 1 except one entry 3 on a 3x3 grid (36 group elements):
    # mean(v) = 38/36, ||v - mean||^2 = 35 (2/36)^2 + (70/36)^2 = 35/9, distance^2 = 4 * 35/9 = 140/9
    conv = GMConv(1, 1, error="vector", grid=3, padding="circular").double()
    with torch.no_grad():
        conv.error.zero_()
        conv.error[5, 0, 0] = 2.0
        conv.error_vector.fill_(1.0)
        conv.error_vector[1, 2, 0] = 3.0
    assert float(conv.distance_to_group_matrices().detach()) == pytest.approx(140 / 9, rel=1e-12)
    # ... and it is seed 003's eq. 13: the squared Frobenius distance of the layer's matrix on p4(3x3)
    # from the nearest group matrix (entries averaged along each group diagonal h^-1 g = const)
    torch.manual_seed(1)
    with torch.no_grad():
        conv.kappa.normal_()
        conv.error.normal_()
        conv.error_vector.normal_()
        conv.bias.zero_()
    eye = torch.eye(36, dtype=torch.float64).reshape(36, 1, 4, 3, 3)
    m = conv.forward_diagonals(eye).reshape(36, 36).T  # m[row, col]
    labels = {}
    for row in range(36):
        k, y, x = divmod(row, 9)[0], *divmod(row % 9, 3)
        for col in range(36):
            k2, y2, x2 = divmod(col, 9)[0], *divmod(col % 9, 3)
            off = G.c4_rotation(-k) @ [x2 - x, y2 - y]
            labels.setdefault(((k2 - k) % 4, off[0] % 3, off[1] % 3), []).append(m[row, col])
    dist = sum(float(((torch.stack(v) - torch.stack(v).mean()) ** 2).sum()) for v in labels.values())
    assert float(conv.distance_to_group_matrices().detach()) == pytest.approx(dist, rel=1e-10)
    model = build_small("smoke", "gmcnn", error=True, alpha=0.25)
    with torch.no_grad():
        for conv in model.convs:
            conv.error.normal_()
            conv.error_vector.normal_()
    expected = sum(float(c.error.pow(2).sum() * (c.error_vector - c.error_vector.mean()).pow(2).sum())
                   for c in model.convs)
    assert float(model.regularizer().detach()) == pytest.approx(0.25 * expected, rel=1e-12)
