"""CRNN text recogniser (Shi, Bai & Yao 2015): convolutions -> column features -> BiLSTM -> CTC.

Key idea: a text line needs no character segmentation. A CNN turns the (H, W) image into
a left-to-right sequence of T = W/4 column feature vectors (height pooled to H/16, its rows
stacked into the features); a bidirectional LSTM reads the sequence so each column sees its
context; a linear layer gives per-column scores over the alphabet plus the CTC ``blank``
(class 0), trained with the CTC loss and decoded greedily or by beam search.

x (B, C, H, W) float, H a multiple of 16 -> log-probabilities (T, B, num_classes + 1),
T = W // 4 (the layout ``F.ctc_loss`` and :mod:`cvcraft.losses.ctc` read).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError
from cvcraft.models.registry import register_model
from cvcraft.nn.recurrent import LSTM

BLANK = 0


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]  # fmt: skip


class CRNN(nn.Module):
    """CNN (VGG-style, 4 pools: /2, /2 both axes, then /2 height only twice) + BiLSTM + linear.

    Args:
        num_classes: alphabet size without the blank (10 for digits).
        in_chans: image channels (1: grey).
        img_height: input height, a multiple of 16 (the CNN leaves img_height/16 rows).
        width: channels of the first conv (doubling to 8x).
        hidden: LSTM hidden size per direction; ``layers``: stacked BiLSTM layers.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_height: int = 32,
        width: int = 16,
        hidden: int = 96,
        layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if img_height % 16 or img_height < 16:
            raise ConfigError(f"CRNN img_height={img_height} must be a multiple of 16")
        if num_classes < 1:
            raise ConfigError(f"CRNN needs num_classes >= 1, got {num_classes}")
        w = width
        self.cnn = nn.Sequential(
            *_conv(in_chans, w), nn.MaxPool2d(2),  # (H/2, W/2)
            *_conv(w, 2 * w), nn.MaxPool2d(2),  # (H/4, W/4)
            *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w), nn.MaxPool2d((2, 1)),  # (H/8, W/4)
            *_conv(4 * w, 8 * w), *_conv(8 * w, 8 * w), nn.MaxPool2d((2, 1)),  # (H/16, W/4)
        )  # fmt: skip
        self.rows = img_height // 16
        self.rnn = LSTM(8 * w * self.rows, hidden, num_layers=layers, bidirectional=True,
                        dropout=dropout)  # fmt: skip
        self.head = nn.Linear(2 * hidden, num_classes + 1)
        self.num_classes, self.in_chans, self.img_height = num_classes, in_chans, img_height
        self.default_input_size = (in_chans, img_height, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans or x.shape[2] != self.img_height:
            raise ConfigError(
                f"CRNN expects (B, {self.in_chans}, {self.img_height}, W) images, got "
                f"{tuple(x.shape)}; resize lines to height {self.img_height}"
            )
        if x.shape[3] < 4:
            raise ConfigError(f"CRNN needs images at least 4 px wide, got {x.shape[3]}")
        f = self.cnn(x)  # (B, 8w, H/16, W/4)
        seq = f.flatten(1, 2).permute(2, 0, 1)  # (T, B, 8w * H/16): one vector per column
        out, _ = self.rnn(seq)  # (T, B, 2 * hidden)
        return F.log_softmax(self.head(out), dim=2)  # (T, B, num_classes + 1)

    @staticmethod
    def output_lengths(widths: torch.Tensor) -> torch.Tensor:
        """Frames T of images ``widths`` pixels wide (two /2 pools along the width)."""
        return torch.as_tensor(widths) // 4


@register_model()
def crnn(num_classes: int = 10, in_chans: int = 1, **kw) -> CRNN:
    """CRNN for text lines 32 px high: VGG-style CNN (16..128 channels) + 2-layer BiLSTM (96)
    + CTC; 0.78 M parameters (Shi et al.'s is 8.3 M, sized for words, not digits)."""
    return CRNN(num_classes=num_classes, in_chans=in_chans, **kw)
