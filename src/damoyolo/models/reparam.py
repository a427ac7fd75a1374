"""Re-parameterisation protocol.

Every re-parameterisable block has a ``reparameterize()`` method (RepConv merges its
branches; ConvBNAct folds BatchNorm into its convolution).  :func:`reparameterize`
walks a model once and calls them all; outputs are unchanged up to float rounding.
"""

from __future__ import annotations

from torch import nn

from .layers import ConvBNAct, RepConv

__all__ = ["reparameterize", "is_reparameterized"]


def reparameterize(model: nn.Module, fold_bn: bool = True) -> nn.Module:
    """Convert ``model`` in place for deployment and return it (in eval mode).

    fold_bn: also fold every conv+BN pair (default).  ``False`` fuses only RepConv
    branches, which is the deploy form the published params/FLOPs were counted on.
    """
    model.eval()
    for m in list(model.modules()):  # parents first: RepConv reads its children's BN
        if isinstance(m, RepConv):
            m.reparameterize()
        elif fold_bn and isinstance(m, ConvBNAct):
            m.reparameterize()
        elif hasattr(m, "reparameterize") and m is not model and not isinstance(
                m, (RepConv, ConvBNAct)):
            m.reparameterize()
    return model


def is_reparameterized(model: nn.Module) -> bool:
    """True when no RepConv branch and no BatchNorm remain."""
    return not any(isinstance(m, nn.BatchNorm2d) or (isinstance(m, RepConv) and m.fused is None)
                   for m in model.modules())
