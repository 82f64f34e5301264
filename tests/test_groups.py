"""The shared rotation module: group structure, actions on fields, and the kernel/regular index maps."""

from __future__ import annotations

import numpy as np
import pytest

from models import groups as G

GROUPS = [G.c4(), G.octahedral(), G.octahedral(reflections=True)]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_group_axioms(group: G.RotationGroup) -> None:
    n = len(group)
    assert n == {"C4": 4, "O": 24, "Oh": 48}[group.name]
    assert np.array_equal(group.matrices[0], np.eye(group.dim))
    for a in range(n):
        assert sorted(group.cayley[a]) == list(range(n))  # Latin square
        assert group.cayley[a, group.inverse[a]] == 0
        for b in range(n):
            assert np.array_equal(group.matrices[group.cayley[a, b]], group.matrices[a] @ group.matrices[b])


def test_octahedral_rotations_are_proper() -> None:
    dets = np.round(np.linalg.det(G.octahedral().matrices))
    assert np.all(dets == 1)
    assert sorted(np.round(np.linalg.det(G.octahedral(True).matrices)).tolist()).count(-1) == 24


def test_c4_quarter_turn_on_vectors() -> None:
    u = np.zeros((2, 3, 3))
    u[0, 1, 2] = 1.0  # unit x-vector at (x=2, y=1): right of the centre
    out = G.rotate_vector(u, G.c4_rotation(1), component_axis=0)
    # a CCW quarter turn moves it above the centre (x=1, y=2) and turns it into +y
    assert out[1, 2, 1] == 1.0 and np.abs(out).sum() == 1.0


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_actions_are_homomorphisms(group: G.RotationGroup) -> None:
    rng = np.random.default_rng(0)
    shape = (group.dim,) + (4,) * group.dim
    u = rng.normal(size=shape)
    for a, b in [(1, 2), (3, 1), (len(group) - 1, len(group) // 2)]:
        ab = group.cayley[a, b]
        lhs = group.act_vector(group.act_vector(u, b, 0), a, 0)
        assert np.array_equal(lhs, group.act_vector(u, ab, 0))
        f = rng.normal(size=(2, len(group)) + (3,) * group.dim)
        lhs = G.act_regular(G.act_regular(f, group, b, 1), group, a, 1)
        assert np.array_equal(lhs, G.act_regular(f, group, ab, 1))


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_kernel_index_matches_rotate_scalar(group: G.RotationGroup) -> None:
    k = np.random.default_rng(1).normal(size=(2,) + (3,) * group.dim)
    idx = G.kernel_index(group, 3)
    for g, m in enumerate(group.matrices):
        assert np.array_equal(k.reshape(2, -1)[:, idx[g]], G.rotate_scalar(k, m).reshape(2, -1))


def test_component_gather_and_regular_permutation() -> None:
    group = G.octahedral()
    src, sign = G.component_gather(group)
    v = np.array([1.0, 2.0, 3.0])
    for g, m in enumerate(group.matrices):
        assert np.array_equal(sign[g] * v[src[g]], m @ v)
    perm = G.regular_permutation(group)
    for g in range(len(group)):
        for h in range(len(group)):
            assert group.cayley[g, perm[g, h]] == h  # perm[g, h] = g^-1 h


def test_torch_and_numpy_agree() -> None:
    torch = pytest.importorskip("torch")
    group = G.octahedral()
    a = np.random.default_rng(2).normal(size=(1, 3, 4, 4, 4))
    for g in (1, 7, 23):
        assert np.array_equal(group.act_vector(torch.from_numpy(a), g, 1).numpy(), group.act_vector(a, g, 1))
        f = np.random.default_rng(3).normal(size=(1, 24, 2, 2, 2))
        moved = G.act_regular(torch.from_numpy(f), group, g, 1).numpy()
        assert np.array_equal(moved, G.act_regular(f, group, g, 1))


def test_trivial_group() -> None:
    t = G.trivial(3)
    assert len(t) == 1 and t.cayley.tolist() == [[0]] and G.kernel_index(t, 3).shape == (1, 27)
