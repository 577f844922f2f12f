"""The CRNN recogniser: output layout (T = W/4 frames of log-probabilities over the digits
plus the blank), its BiLSTM is cvcraft's (loads torch.nn.LSTM weights and gives torch's
numbers), registration under the recognize task, and input errors."""

from __future__ import annotations

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.recognition.crnn import CRNN
from cvcraft.tasks import model_task


def test_output_layout_and_lengths():
    m = create_model("crnn").eval()
    x = torch.rand(3, 1, 32, 100)
    lp = m(x)
    assert lp.shape == (25, 3, 11)
    torch.testing.assert_close(lp.exp().sum(2), torch.ones(25, 3))
    assert int(CRNN.output_lengths(torch.tensor([100]))[0]) == 25
    # 48 px lines: 3 rows of features per column
    m48 = create_model("crnn", img_height=48, in_chans=3, num_classes=36).eval()
    assert m48(torch.rand(2, 3, 48, 64)).shape == (16, 2, 37)


def test_bilstm_matches_torch_lstm():
    m = create_model("crnn").eval()
    ref = torch.nn.LSTM(m.rnn.input_size, m.rnn.hidden_size, num_layers=2, bidirectional=True)
    m.rnn.load_state_dict(ref.state_dict(), strict=True)
    seq = torch.randn(9, 2, m.rnn.input_size)
    torch.testing.assert_close(m.rnn(seq)[0], ref(seq)[0], atol=1e-6, rtol=1e-5)


def test_registered_for_recognize():
    assert model_task("crnn") == "recognize"


def test_bad_inputs():
    m = create_model("crnn")
    with pytest.raises(ConfigError, match="height 32"):
        m(torch.rand(1, 1, 28, 64))
    with pytest.raises(ConfigError, match="multiple of 16"):
        CRNN(img_height=40)
    with pytest.raises(ConfigError, match="4 px"):
        m(torch.rand(1, 1, 32, 3))
