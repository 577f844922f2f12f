"""Recurrent cells and layers written from their equations: Elman RNN, LSTM, GRU.

A recurrent layer reads a sequence one step at a time, carrying a hidden state ``h``;
stacked layers feed each layer's outputs to the next, a bidirectional layer runs a second
copy right-to-left and concatenates the two outputs. The input projection ``W_ih x_t + b_ih``
does not depend on the state, so it is computed for all steps in one matmul; only the
state update ``W_hh h_{t-1}`` runs step by step.

- RNN:  ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or ReLU)
- LSTM (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000), gates in the order
  ``[i, f, g, o]`` of the stacked weights: ``i, f, o = sigmoid(.)``, ``g = tanh(.)``,
  ``c_t = f * c_{t-1} + i * g`` (the cell state), ``h_t = o * tanh(c_t)``
- GRU (Cho et al. 2014), gates ``[r, z, n]``: ``r, z = sigmoid(.)``,
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h_t = (1 - z) * n + z * h_{t-1}``

Parameter names and layouts are those of ``torch.nn.RNN/LSTM/GRU`` (``weight_ih_l0``,
``weight_hh_l1_reverse``, ... and ``weight_ih`` etc. for the cells), so a torch state_dict
loads as is. Shapes: input (T, B, I), or (B, T, I) with ``batch_first``; states
(layers * directions, B, H) — never batch-first, as in torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


# ----------------------------------------------------------------------------- one step
def rnn_step(
    xp: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None,
    relu: bool = False,
) -> torch.Tensor:  # fmt: skip
    """One Elman step from the projected input ``xp = W_ih x + b_ih`` (B, H) -> h (B, H)."""
    pre = xp + F.linear(h, w_hh, b_hh)
    return torch.relu(pre) if relu else torch.tanh(pre)


def lstm_step(
    xp: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor,
    b_hh: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One LSTM step: xp (B, 4H) projected input, h, c (B, H) -> (h', c')."""
    i, f, g, o = (xp + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)  # each (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget old, write new
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(
    xp: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> torch.Tensor:
    """One GRU step: xp (B, 3H) projected input, h (B, H) -> h'. The reset gate scales the
    *projected* state ``W_hn h + b_hn`` (the cuDNN/torch variant of Cho et al.)."""
    x_r, x_z, x_n = xp.chunk(3, dim=1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    """torch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


def _check_sizes(input_size: int, hidden_size: int) -> None:
    if input_size <= 0 or hidden_size <= 0:
        raise ConfigError(
            f"recurrent sizes must be positive, got input_size={input_size}, "
            f"hidden_size={hidden_size}"
        )


# ----------------------------------------------------------------------------- cells
class _Cell(nn.Module):
    mode = "rnn_tanh"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size)
        g = GATES[self.mode]
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(g * hidden_size)) if bias else None
        _init_uniform(self, hidden_size)

    def _start(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            raise ConfigError(
                f"{type(self).__name__} expects input (B, {self.input_size}) or "
                f"({self.input_size},), got {tuple(x.shape)}"
            )
        single = x.dim() == 1
        return (x[None] if single else x), single

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)


class RNNCell(_Cell):
    """``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``; x (B, I), h (B, H) -> h' (B, H)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"RNN nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.mode = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        x, single = self._start(x, h)
        h = self._zeros(x) if h is None else (h[None] if single else h)
        xp = F.linear(x, self.weight_ih, self.bias_ih)
        out = rnn_step(xp, h, self.weight_hh, self.bias_hh, relu=self.mode == "rnn_relu")
        return out[0] if single else out


class LSTMCell(_Cell):
    """One LSTM step; x (B, I), (h, c) (B, H) each -> (h', c')."""

    mode = "lstm"

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, single = self._start(x, state)
        if state is None:
            h = c = self._zeros(x)
        else:
            h, c = (s[None] for s in state) if single else state
        h, c = lstm_step(F.linear(x, self.weight_ih, self.bias_ih), h, c, self.weight_hh,
                         self.bias_hh)  # fmt: skip
        return (h[0], c[0]) if single else (h, c)


class GRUCell(_Cell):
    """One GRU step; x (B, I), h (B, H) -> h' (B, H)."""

    mode = "gru"

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        x, single = self._start(x, h)
        h = self._zeros(x) if h is None else (h[None] if single else h)
        out = gru_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh,
                       self.bias_hh)  # fmt: skip
        return out[0] if single else out


# ----------------------------------------------------------------------------- layers
class RecurrentLayers(nn.Module):
    """A stack of ``num_layers`` recurrent layers of one kind, optionally bidirectional.

    Layer k > 0 reads the (concatenated, for bidirectional) outputs of layer k-1, with
    dropout between layers in training (not after the last). Use :class:`RNN`,
    :class:`LSTM` or :class:`GRU`.
    """

    mode = "rnn_tanh"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size)
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ConfigError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        g = GATES[self.mode]
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                self.register_parameter(
                    f"weight_ih{suffix}", nn.Parameter(torch.empty(g * hidden_size, in_size))
                )
                self.register_parameter(
                    f"weight_hh{suffix}", nn.Parameter(torch.empty(g * hidden_size, hidden_size))
                )
                if bias:
                    self.register_parameter(
                        f"bias_ih{suffix}", nn.Parameter(torch.empty(g * hidden_size))
                    )
                    self.register_parameter(
                        f"bias_hh{suffix}", nn.Parameter(torch.empty(g * hidden_size))
                    )
        _init_uniform(self, hidden_size)

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    def _weights(self, suffix: str) -> tuple[torch.Tensor, ...]:
        """(W_ih, b_ih, W_hh, b_hh) of one layer and direction (biases None without bias)."""
        b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
        b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
        return getattr(self, "weight_ih" + suffix), b_ih, getattr(self, "weight_hh" + suffix), b_hh

    def _run(
        self, xp: torch.Tensor, state: tuple[torch.Tensor, ...], w_hh, b_hh, reverse: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Run one direction over projected inputs xp (T, B, gH) from ``state`` (h[, c])."""
        steps = range(xp.shape[0] - 1, -1, -1) if reverse else range(xp.shape[0])
        outs: list[torch.Tensor] = [None] * xp.shape[0]  # type: ignore[list-item]
        for t in steps:
            if self.mode == "lstm":
                state = lstm_step(xp[t], state[0], state[1], w_hh, b_hh)
            elif self.mode == "gru":
                state = (gru_step(xp[t], state[0], w_hh, b_hh),)
            else:
                state = (rnn_step(xp[t], state[0], w_hh, b_hh, self.mode == "rnn_relu"),)
            outs[t] = state[0]
        return torch.stack(outs), state  # (T, B, H)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            order = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ConfigError(
                f"{type(self).__name__} expects input {order} or (T, I) with "
                f"I={self.input_size}, got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor, state=None):
        """x (T, B, I) [(B, T, I) if batch_first, or unbatched (T, I)], state h0 (or (h0, c0)
        for LSTM) of (layers * dirs, B, H) -> (output (T, B, dirs * H), h_n [or (h_n, c_n)])."""
        self._check_input(x)
        unbatched = x.dim() == 2
        if unbatched:
            x = x[:, None]
            if state is not None:
                state = tuple(s[:, None] for s in state) if self.mode == "lstm" else state[:, None]
        elif self.batch_first:
            x = x.transpose(0, 1)  # (T, B, I)
        if x.shape[0] == 0:
            raise ConfigError(f"{type(self).__name__}: the input sequence is empty (T = 0)")
        L, D, B, H = self.num_layers, self.num_directions, x.shape[1], self.hidden_size
        if state is None:
            zeros = x.new_zeros(L * D, B, H)
            states = (zeros, zeros) if self.mode == "lstm" else (zeros,)
        else:
            states = tuple(state) if self.mode == "lstm" else (state,)
            for s in states:
                if tuple(s.shape) != (L * D, B, H):
                    raise ConfigError(
                        f"{type(self).__name__}: initial state must be {(L * D, B, H)}, "
                        f"got {tuple(s.shape)}"
                    )
        finals: list[tuple[torch.Tensor, ...]] = []
        for layer in range(L):
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                w_ih, b_ih, w_hh, b_hh = self._weights(suffix)
                xp = F.linear(x, w_ih, b_ih)  # (T, B, gH): all steps' input projections at once
                s0 = tuple(s[layer * D + d] for s in states)
                out, sn = self._run(xp, s0, w_hh, b_hh, reverse=d == 1)
                outs.append(out)
                finals.append(sn)
            x = torch.cat(outs, dim=2) if D == 2 else outs[0]  # (T, B, D*H)
            if self.dropout and self.training and layer < L - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = torch.stack([f[0] for f in finals])  # (L*D, B, H)
        if unbatched:
            x, h_n = x[:, 0], h_n[:, 0]
        elif self.batch_first:
            x = x.transpose(0, 1)
        if self.mode == "lstm":
            c_n = torch.stack([f[1] for f in finals])
            return x, (h_n, c_n[:, 0] if unbatched else c_n)
        return x, h_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.batch_first:
            s += ", batch_first=True"
        return s


class RNN(RecurrentLayers):
    """Stacked (bi)directional Elman RNN, ``nonlinearity`` 'tanh' or 'relu'; torch.nn.RNN's
    arguments, names and outputs."""

    def __init__(self, *args, nonlinearity: str = "tanh", **kwargs) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"RNN nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.mode = f"rnn_{nonlinearity}"
        super().__init__(*args, **kwargs)


class LSTM(RecurrentLayers):
    """Stacked (bi)directional LSTM; forward returns ``(output, (h_n, c_n))`` as torch's."""

    mode = "lstm"


class GRU(RecurrentLayers):
    """Stacked (bi)directional GRU; torch.nn.GRU's arguments, names and outputs."""

    mode = "gru"
