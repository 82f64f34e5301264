"""CNN, G-CNN and relaxed G-CNN for both tasks, built from :class:`models.gconv.GroupConv`.

A plain CNN is the same network over the one-element group, so the three models share code and topology
and differ only in the group, the width and the number of relaxed banks.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from models import groups as G
from models.gconv import FieldNorm, GroupConv, Rep, upsample_nearest

SHARED_GROUP = (
    "group: kernel banks psi_l in the group conv's own basis, each bank's group weights w_l(g) at mean 1 "
    "(a GCNN or CNN is one bank with w = 1)"
)


class _Base(nn.Module):
    group: G.RotationGroup | None
    alpha: float
    shared_parameterisation = SHARED_GROUP

    def shared_form(self) -> _Base:
        """The same function with every relaxed bank rescaled to mean group weight 1 (a copy): the
        ``w_l(g) psi_l`` rescaling freedom removed, so a GCNN and an RGCNN are both written as kernel
        banks in one normalisation. Unrelaxed models come back as an unchanged copy."""
        shared = copy.deepcopy(self)
        for conv in shared.modules():
            if isinstance(conv, GroupConv) and conv.relaxed_weights is not None:
                mean = conv.relaxed_weights.detach().mean(dim=1)
                if bool((mean.abs() < 1e-8).any()):
                    raise ValueError("a relaxed bank's group weights average to 0: no mean-1 normalisation")
                conv.rescale_banks(1 / mean)
        return shared

    def regularizer(self) -> torch.Tensor:
        terms = [m.relaxation_penalty() for m in self.modules() if isinstance(m, GroupConv)]
        total = torch.stack(terms).sum()
        return self.alpha * total


class SmokeGroupNet(_Base):
    """2D next-frame predictor: lift -> (layers - 2) group convs -> projection to one vector field.

    Input ``[B, in_frames * 2, H, W]`` (frame-major, components (x, y)); output ``[B, 2, H, W]``.
    """

    def __init__(
        self,
        group: G.RotationGroup,
        hidden: int,
        layers: int = 5,
        kernel_size: int = 3,
        in_frames: int = 1,
        relax: int = 0,
        batch_norm: bool = True,
        alpha: float = 0.0,
        equivariant_group: bool = True,
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("layers must be >= 2")
        self.group = group if equivariant_group else None
        self.alpha, self.in_frames = alpha, in_frames
        blocks: list[nn.Module] = [GroupConv(group, "lift", in_frames, hidden, kernel_size, "vector", relax)]
        for i in range(layers - 1):
            if batch_norm:
                blocks.append(FieldNorm(hidden))
            blocks.append(nn.ReLU())
            if i < layers - 2:
                blocks.append(GroupConv(group, "group", hidden, hidden, kernel_size, relax=relax))
        blocks.append(GroupConv(group, "project", hidden, 1, kernel_size, "vector", relax))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SRGroupNet(_Base):
    """3D x4 super-resolution: encoder at the input grid, two x2 up-blocks, projection head.

    * encoder: lift + ``enc_layers`` group convs (kernel 3)
    * up-block i: transposed group conv (kernel 2, stride 2) + nearest-upsampled skip, then
      ``up_layers[i]`` group convs
    * head: projection (kernel 3) to a vector field, or to 3 scalar channels if ``scalar_channels``.

    ``padding="circular"``: the fields are periodic (the turbulence box), so every 'same' convolution wraps
    around; zero padding would treat the faces as walls (on an 8^3 lr grid every cell is within reach of
    one). Both commute with the cube rotations. ``zero_head``: the head starts at zero, so a residual model
    starts exactly at the upsampling it corrects (a random head adds noise of the residual's own size that
    training first has to remove, which it did by switching the ReLUs off: a dead net, correction 0).

    Input ``[B, frames, 3, z, y, x]`` (components x, y, z); output ``[B, 3, 4z, 4y, 4x]``. With
    ``scalar_channels=True`` the 9 input numbers per voxel are treated as unrelated scalars, the
    original study's choice, and the model is only equivariant to the grid-only (scalar) action.
    """

    def __init__(
        self,
        group: G.RotationGroup,
        hidden: int,
        enc_layers: int = 6,
        up_layers: tuple[int, int] = (1, 0),
        frames: int = 3,
        relax: int = 0,
        scalar_channels: bool = False,
        batch_norm: bool = False,
        alpha: float = 0.0,
        equivariant_group: bool = True,
        padding: str = "circular",
        zero_head: bool = True,
    ) -> None:
        super().__init__()
        if padding not in ("circular", "zeros"):
            raise ValueError(f"padding must be 'circular' or 'zeros', got {padding!r}")
        self.group = group if equivariant_group else None
        self.alpha, self.frames, self.scalar_channels = alpha, frames, scalar_channels
        rep: Rep = "scalar" if scalar_channels else "vector"
        n_in = frames * 3 if scalar_channels else frames

        def act() -> list[nn.Module]:
            return ([FieldNorm(hidden)] if batch_norm else []) + [nn.ReLU()]

        def conv() -> list[nn.Module]:
            return [GroupConv(group, "group", hidden, hidden, 3, relax=relax, padding_mode=padding), *act()]

        enc: list[nn.Module] = [GroupConv(group, "lift", n_in, hidden, 3, rep, relax, padding_mode=padding)]
        enc += act()
        for _ in range(enc_layers):
            enc += conv()
        self.encoder = nn.Sequential(*enc)
        self.ups = nn.ModuleList(
            GroupConv(group, "group", hidden, hidden, 2, relax=relax, transposed=True) for _ in up_layers
        )
        self.up_acts = nn.ModuleList(nn.Sequential(*act()) for _ in up_layers)
        self.up_convs = nn.ModuleList(
            nn.Sequential(*[mod for _ in range(k) for mod in conv()]) for k in up_layers
        )
        self.head = GroupConv(
            group, "project", hidden, 3 if scalar_channels else 1, 3, rep, relax, padding_mode=padding
        )
        if zero_head:
            nn.init.zeros_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = self.encoder(x.reshape(b, -1, *x.shape[-3:]))
        for up, act, convs in zip(self.ups, self.up_acts, self.up_convs, strict=True):
            h = convs(act(up(h) + upsample_nearest(h, 3)))
        return self.head(h)
