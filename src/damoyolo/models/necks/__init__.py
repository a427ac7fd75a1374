from .giraffe import GiraffeNeckV2

__all__ = ["GiraffeNeckV2"]
