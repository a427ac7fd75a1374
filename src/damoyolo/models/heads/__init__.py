from .zero_head import HeadOutput, ZeroHead

__all__ = ["ZeroHead", "HeadOutput"]
