"""Turn class averages into network input: the published mode and our Fourier mode.

*Published* (for published CryoSift weights): each image min-max scaled to [0, 1]; images
larger than 210 px are area-averaged down to 210 px (each output pixel is the mean of the
input area it covers, fractional pixels weighted by overlap); smaller ones are zero-padded
to 210 px, centred, the odd pixel going to the bottom/right.

*Fourier* (our models): each image is Fourier-rescaled so that the whole box fills
``input_size`` px (or, with a target pixel size, resampled to that pixel size and then
centre-cropped or zero-padded to ``input_size``), then normalised against its background:
minus the mean of the pixels outside the inscribed circle of diameter 0.9 box, divided by
the standard deviation of the whole image. Fourier rescaling keeps the band limit that the
pixel size implies, unlike pixel-domain interpolation.

Which mode runs is recorded in the model's checkpoint, never chosen by the user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from cryosift.fourier import fourier_crop
from cryosift.scoring.network import MIN_INPUT_SIZE

PUBLISHED_SIZE = 210
#: Diameter of the circle (fraction of the box) whose outside is "background".
BACKGROUND_DIAMETER = 0.9


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input images.

    Attributes
    ----------
    mode : {"published", "fourier"}
        See the module description.
    input_size : int
        Side of the network input in px (>= 31).
    pixel_size : float or None
        Fourier mode only: resample to this many Å/px, then crop/pad to ``input_size``;
        None rescales the whole box to ``input_size`` px.
    normalisation : {"minmax", "background"}
        Published mode uses min-max; Fourier mode uses background normalisation.
    level_solvent : bool
        When scoring, first remove the step between the solvent and the masked-out outside of
        class averages masked as RELION and cryoSPARC mask them (:mod:`cryosift.scoring.solvent`).
        Not applied to training examples: the builtin engine's averages rarely have such a step.
        Off for the published model, which was trained on real RELION averages. None (the
        default) means on in Fourier mode, off in published mode.
    """

    mode: str = "fourier"
    input_size: int = 64
    pixel_size: float | None = None
    normalisation: str = "background"
    level_solvent: bool | None = None

    def __post_init__(self):
        if self.mode not in ("published", "fourier"):
            raise ValueError(f"unknown preprocessing mode {self.mode!r} (published or fourier)")
        if self.normalisation not in ("minmax", "background"):
            raise ValueError(f"unknown normalisation {self.normalisation!r} (minmax or background)")
        if int(self.input_size) < MIN_INPUT_SIZE:
            raise ValueError(f"input size {self.input_size} px is below the network's minimum of {MIN_INPUT_SIZE} px")
        if self.pixel_size is not None and not self.pixel_size > 0:
            raise ValueError(f"target pixel size must be positive, got {self.pixel_size}")
        if self.level_solvent is None:
            object.__setattr__(self, "level_solvent", self.mode == "fourier")

    def to_dict(self) -> dict:
        d = asdict(self)
        # the mode's default is left out, so checkpoints written before the option stay byte-identical
        if d["level_solvent"] == (self.mode == "fourier"):
            del d["level_solvent"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(**{k: d[k] for k in ("mode", "input_size", "pixel_size", "normalisation", "level_solvent")
                      if k in d})


#: Preprocessing of the published CryoSift model.
PUBLISHED_PREPROCESSING = Preprocessing(mode="published", input_size=PUBLISHED_SIZE, pixel_size=None,
                                        normalisation="minmax")
#: Default preprocessing for models we train.
DEFAULT_PREPROCESSING = Preprocessing()


def minmax(images: torch.Tensor) -> torch.Tensor:
    """Scale each image to [0, 1]; a constant image becomes zeros. Shape (n, h, w) in and out."""
    flat = images.reshape(images.shape[0], -1)
    lo = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (images - lo) / safe, torch.zeros_like(images))


def area_matrix(n_in: int, n_out: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """Area-averaging weights for shrinking ``n_in`` samples to ``n_out`` (n_out <= n_in).

    Returns
    -------
    torch.Tensor
        Shape (n_out, n_in); row i holds the overlap of input pixel j with the output
        footprint [i s, (i + 1) s), s = n_in / n_out, divided by s (rows sum to 1).
    """
    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=dtype, device=device)[:, None] * scale
    j = torch.arange(n_in, dtype=dtype, device=device)[None, :]
    overlap = (torch.minimum(lo + scale, j + 1) - torch.maximum(lo, j)).clamp(min=0)
    return overlap / scale


def area_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Shrink square images (n, b, b) to (n, size, size) by area averaging."""
    b = images.shape[-1]
    if size == b:
        return images
    a = area_matrix(b, size, dtype=images.dtype, device=images.device)
    return a @ images @ a.T


def centre_pad(images: torch.Tensor, size: int, value: float = 0.0) -> torch.Tensor:
    """Pad (n, b, b) to (n, size, size) with ``value``, centred; the odd pixel goes bottom/right."""
    b = images.shape[-1]
    before = (size - b) // 2
    after = size - b - before
    return torch.nn.functional.pad(images, (before, after, before, after), value=value)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Crop (n, b, b) to the central (n, size, size), the box centre b // 2 kept at size // 2."""
    start = images.shape[-1] // 2 - size // 2
    return images[..., start:start + size, start:start + size]


def fourier_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resample (n, b, b) to (n, size, size) by cropping or zero-padding the Fourier transform.

    The mean pixel value is preserved; shrinking removes frequencies beyond the new Nyquist.
    """
    b = images.shape[-1]
    if size == b:
        return images
    if size < b:
        return fourier_crop(images, size)
    f = torch.fft.fftshift(torch.fft.fft2(images.to(torch.float32)), dim=(-2, -1))
    start = size // 2 - b // 2
    padded = torch.zeros(images.shape[:-2] + (size, size), dtype=f.dtype, device=f.device)
    padded[..., start:start + b, start:start + b] = f
    out = torch.fft.ifft2(torch.fft.ifftshift(padded, dim=(-2, -1))).real
    return out * (size * size) / (b * b)


def background_normalise(images: torch.Tensor) -> torch.Tensor:
    """Subtract the mean outside the inscribed circle (0.9 box) and divide by the image's SD.

    A constant image becomes zeros. Shape (n, b, b) in and out.
    """
    b = images.shape[-1]
    r = torch.arange(b, device=images.device, dtype=torch.float32) - b // 2
    outside = (r[:, None] ** 2 + r[None, :] ** 2) > (BACKGROUND_DIAMETER * b / 2) ** 2
    flat = images.reshape(images.shape[0], -1)
    bg_mean = flat[:, outside.reshape(-1)].mean(dim=1)
    sd = flat.std(dim=1, unbiased=False)
    safe = torch.where(sd > 0, sd, torch.ones_like(sd))
    out = (images - bg_mean[:, None, None]) / safe[:, None, None]
    return torch.where((sd > 0)[:, None, None], out, torch.zeros_like(out))


def preprocess(images: torch.Tensor, pixel_size: float, spec: Preprocessing) -> torch.Tensor:
    """Network input from raw class averages.

    Parameters
    ----------
    images : torch.Tensor
        Class averages as stored, shape (n, box, box), any float dtype; the output follows
        its device.
    pixel_size : float
        Å/px of ``images`` (used when ``spec.pixel_size`` is set).
    spec : Preprocessing
        The model's preprocessing.

    Returns
    -------
    torch.Tensor
        float32, shape (n, 1, spec.input_size, spec.input_size).
    """
    x = images.to(torch.float32)
    size = int(spec.input_size)
    if spec.mode == "published":
        x = minmax(x) if spec.normalisation == "minmax" else background_normalise(x)
        if x.shape[-1] > size:
            x = area_resize(x, size)
        return centre_pad(x, size)[:, None]
    box = x.shape[-1]
    if spec.pixel_size is None:
        x = fourier_resize(x, size)
    else:
        new_box = max(1, round(box * pixel_size / spec.pixel_size))
        x = fourier_resize(x, new_box)
    x = background_normalise(x) if spec.normalisation == "background" else minmax(x)
    if x.shape[-1] > size:
        x = centre_crop(x, size)
    elif x.shape[-1] < size:
        x = centre_pad(x, size)
    return x[:, None]


def dihedral_view(images: torch.Tensor, view: int) -> torch.Tensor:
    """One of the 8 exact symmetries of the square: view 0-3 rotate by view x 90 degrees, 4-7 mirror first.

    Parameters
    ----------
    images : torch.Tensor
        Shape (..., n, n).
    view : int
        0 ... 7; 0 is the images as given.
    """
    if not 0 <= view < 8:
        raise ValueError(f"view must be 0-7, got {view}")
    out = images.flip(-1) if view >= 4 else images
    return torch.rot90(out, view % 4, dims=(-2, -1)) if view % 4 else out
