"""Training and evaluation loops: pure PyTorch (torch.distributed when initialised, never Ray)."""
