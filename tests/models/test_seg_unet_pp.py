import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info


def test_unet_pp_param_count_matches_the_paper():
    # Zhou et al. 2018, Table 1: UNet++ 9.04M parameters (widths 32..512, no BN).
    with torch.device("meta"):
        m = create_model("unet_pp", num_classes=1, deep_supervision=True, norm=None)
    assert round(model_info(m)["params"] / 1e6, 2) == 9.04


@pytest.mark.parametrize("level", [1, 2, 3])
def test_pruned_inference_equals_the_deep_supervision_head_of_that_level(level):
    # norm=None: train and eval compute the same function, so the training-mode head at
    # column `level` is an oracle for the pruned sub-network.
    torch.manual_seed(0)
    m = create_model("unet_pp", num_classes=2, base=4, depth=3, deep_supervision=True, norm=None)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        main, aux = m.train()(x)
        heads = [*aux, main]
        m.eval().prune_level = level
        assert torch.allclose(m(x), heads[level - 1], atol=1e-6)
        m.ensemble, m.prune_level = True, None
        assert torch.allclose(m(x), torch.stack(heads).mean(0), atol=1e-6)


def test_pruned_network_ignores_deeper_weights():
    m = create_model("unet_pp", num_classes=2, base=4, depth=3, deep_supervision=True,
                     prune_level=2).eval()  # fmt: skip
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = m(x)
        for p in m.enc[3].parameters():  # level 3 is not part of the depth-2 sub-network
            p.add_(1.0)
        assert torch.equal(m(x), y)
        m.prune_level = None
        full = m(x)
    assert not torch.allclose(full, y)


def test_prune_requires_deep_supervision_and_valid_level():
    with pytest.raises(ConfigError, match="prune_level / ensemble need deep_supervision=True"):
        create_model("unet_pp", base=4, prune_level=2)
    with pytest.raises(ConfigError, match=r"prune_level must be in 1\.\.3, got 4"):
        create_model("unet_pp", base=4, depth=3, deep_supervision=True, prune_level=4)
