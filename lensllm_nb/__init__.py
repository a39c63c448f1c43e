"""lensllm-nb."""
