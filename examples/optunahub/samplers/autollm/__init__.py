from .sampler import AutoLLMSampler

__all__ = ["AutoLLMSampler"]
