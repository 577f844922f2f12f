"""ELAN and E-ELAN: YOLOv7's efficient layer aggregation blocks (Wang et al. 2022).

Why: a deep chain of 3x3 convs whose *intermediate* outputs are all concatenated gives every
depth a short gradient path (the shortest and longest path differ little), so a deeper
stack still learns; a 1x1 transition fuses the concatenation.

    a = cv1(x), b = cv2(x) (both 1x1);  x_1 = m_1(b), x_i = m_i(x_{i-1}) (3x3)
    out = cv_out(cat[x_n, x_{n-s}, ..., b, a])    # every s-th chain output, deepest first

``step`` s = 2 is the backbone ELAN (keeps x_2, x_4), s = 1 the neck's ELAN-W (keeps all).
E-ELAN (``cardinality`` g > 1, YOLOv7-E6E's realisation of "expand, shuffle, merge
cardinality"): g ELAN computational stacks with the same input run side by side and their
transition outputs are added, which widens the block without lengthening its gradient path.
(B, in_ch, H, W) -> (B, out_ch, H, W).
"""

from __future__ import annotations

import torch
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.nn.conv import ConvBNAct

__all__ = ["ELAN", "ELANStack"]


class ELANStack(nn.Module):
    """One ELAN computational stack with its transition (formula in the module docstring).

    Args: ``hidden`` channels of cv1/cv2, ``branch`` channels of each 3x3, ``n`` 3x3 convs,
    ``step`` which chain outputs are kept (every ``step``-th, counted back from the last).
    """

    def __init__(
        self, in_ch: int, out_ch: int, hidden: int, branch: int, n: int = 4, step: int = 2,
        act: str = "silu",
    ) -> None:  # fmt: skip
        super().__init__()
        if n < 1 or step < 1 or n % step:
            raise ConfigError(f"ELAN needs n >= 1 and step dividing n, got n={n}, step={step}")
        self.cv1 = ConvBNAct(in_ch, hidden, 1, act=act)
        self.cv2 = ConvBNAct(in_ch, hidden, 1, act=act)
        chans = [hidden] + [branch] * n
        self.m = nn.ModuleList(ConvBNAct(chans[i], branch, 3, act=act) for i in range(n))
        self.keep = list(range(n - 1, -1, -step))  # chain indices, deepest first
        self.cv_out = ConvBNAct(2 * hidden + branch * len(self.keep), out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, y = self.cv1(x), self.cv2(x)
        b, chain = y, []
        for m in self.m:
            y = m(y)
            chain.append(y)  # (B, branch, H, W)
        return self.cv_out(torch.cat([chain[i] for i in self.keep] + [b, a], 1))


class ELAN(nn.Module):
    """ELAN (``cardinality=1``) or E-ELAN (sum of ``cardinality`` ELAN stacks); see above."""

    def __init__(
        self, in_ch: int, out_ch: int, hidden: int, branch: int, n: int = 4, step: int = 2,
        cardinality: int = 1, act: str = "silu",
    ) -> None:  # fmt: skip
        super().__init__()
        if cardinality < 1:
            raise ConfigError(f"ELAN cardinality must be >= 1, got {cardinality}")
        self.stacks = nn.ModuleList(
            ELANStack(in_ch, out_ch, hidden, branch, n, step, act) for _ in range(cardinality)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stacks[0](x)
        for s in self.stacks[1:]:  # merge cardinality: add the groups' outputs
            out = out + s(x)
        return out
