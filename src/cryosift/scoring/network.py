"""The CryoSift network: a residual CNN over the class average plus six per-class features.

The layer order and attribute names follow the published CryoSift model exactly, so its
``state_dict`` keys (``cnn_network.0.layer1.0.weight`` ... ``feat_network.0.bias``; 182 keys,
1,366,999 parameters) load with ``strict=True``. Four stride-2 convolutions without padding
shrink the image 31 -> 15 -> 7 -> 3 -> 1 px, so 31 x 31 px is the smallest input; adaptive
average pooling to 6 x 6 makes the head independent of the input size.
"""

from __future__ import annotations

import torch
from torch import nn

#: Smallest image side in px the network accepts.
MIN_INPUT_SIZE = 31
#: Number of per-class features concatenated after the image branch.
N_FEATURES = 6
#: Dropout probability of the published model (inactive at inference).
DROPOUT = 0.25
#: Channels x pooled size of the image branch output (128 x 6 x 6).
IMAGE_FEATURES = 128 * 6 * 6


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection and batch norm between them.

    ``layer1`` (conv + ReLU) -> ``batchnorm`` -> ``layer2`` (conv + ReLU), plus the input
    (through ``downsampler``, a 3x3 conv, when the channel count changes), then ReLU.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    downsample : bool
        Pass the skip connection through a 3x3 convolution (needed when the channel
        count changes; the published model also uses it for some equal-width blocks).
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        # In-place ReLUs: same function and state_dict, less activation memory.
        self.layer1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.layer2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.downsampler = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1)) if downsample else None
        self.batchnorm = nn.Sequential(nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsampler is None else self.downsampler(x)
        out = self.layer2(self.batchnorm(self.layer1(x)))
        # In-place add only without autograd: the ReLU backward needs ``out`` unchanged.
        out = out.add_(residual) if not torch.is_grad_enabled() else out + residual
        return self.relu(out)


# (kind, in, out, downsample) in published order; each entry is followed by BatchNorm2d and Dropout.
_STAGES = (
    ("block", 1, 16, True), ("block", 16, 16, True), ("stride", 16, 16, None),
    ("block", 16, 32, True), ("block", 32, 32, True), ("stride", 32, 32, None),
    ("block", 32, 64, True), ("block", 64, 64, False), ("block", 64, 64, False), ("stride", 64, 64, None),
    ("block", 64, 128, True), ("block", 128, 128, False), ("block", 128, 128, False), ("stride", 128, 128, None),
)


def _image_branch(dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for kind, cin, cout, downsample in _STAGES:
        if kind == "block":
            layers.append(ResidualBlock(cin, cout, downsample))
        else:
            layers.append(nn.Conv2d(cin, cout, 3, stride=2))  # no padding, no ReLU (as published)
        layers += [nn.BatchNorm2d(cout), nn.Dropout(dropout)]
    layers += [nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class CryoSiftNet(nn.Module):
    """Image branch (``cnn_network``) and a linear head over image + features (``feat_network``).

    Parameters
    ----------
    n_features : int
        Per-class features appended to the 4,608 image features (6 in the published model).
    dropout : float
        Dropout probability used in training.
    """

    def __init__(self, n_features: int = N_FEATURES, dropout: float = DROPOUT):
        super().__init__()
        self.n_features = n_features
        self.cnn_network = _image_branch(dropout)
        self.feat_network = nn.Sequential(nn.Linear(IMAGE_FEATURES + n_features, 1))

    def forward(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Raw network output.

        Parameters
        ----------
        images : torch.Tensor
            Preprocessed class averages, float32, shape (n, 1, h, w), h and w >= 31 px.
        features : torch.Tensor
            Per-class features, float32, shape (n, n_features).

        Returns
        -------
        torch.Tensor
            Shape (n, 1): the undecoded prediction (see :mod:`cryosift.scoring.decode`).
        """
        check_input_size(images.shape[-2:])
        if features.shape != (images.shape[0], self.n_features):
            raise ValueError(f"expected features of shape ({images.shape[0]}, {self.n_features}), got {tuple(features.shape)}")
        x = self.cnn_network(images)
        return self.feat_network(torch.cat([x, features.to(x.dtype)], dim=1))


def check_input_size(shape) -> None:
    """Raise ValueError if an image of ``shape`` (h, w) px is too small for the network."""
    h, w = (int(s) for s in shape)
    if min(h, w) < MIN_INPUT_SIZE:
        raise ValueError(f"class averages of {w} x {h} px are too small for the CryoSift network, "
                         f"which needs at least {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE} px")


def build_network(seed: int | None = None, n_features: int = N_FEATURES) -> CryoSiftNet:
    """A CryoSift network in eval mode; with ``seed``, its initial weights are reproducible.

    Parameters
    ----------
    seed : int, optional
        Seed for the weight initialisation (PyTorch's defaults); the global RNG is untouched.
    n_features : int
        Features appended after the image branch.
    """
    if seed is None:
        net = CryoSiftNet(n_features)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = CryoSiftNet(n_features)
    return net.eval()


def count_parameters(net: nn.Module) -> int:
    """Number of learnable parameters."""
    return sum(p.numel() for p in net.parameters())
