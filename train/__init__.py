"""PyTorch side of disseg: the DIS model, its explicit refinement gradient, data, and two-stage training."""
