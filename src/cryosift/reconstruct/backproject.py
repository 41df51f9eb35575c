"""Direct Fourier inversion: CTF-weighted insertion of particle transforms into a 3D grid.

Each particle's transform X (after undoing its origin shift) is a noisy, CTF-modulated
central section of the map's transform at A^T k (see :mod:`cryosift.projection`). The
backprojector accumulates, on a 2x oversampled grid with trilinear weights,

    D(q) = sum_i w CTF_i X_i        and        W(q) = sum_i w CTF_i^2,

and the map is the inverse transform of D / (W + 1 / tau^2), a Wiener-type estimate
whose per-shell regulariser 1 / tau^2 comes from the spectral SNR measured between two
independent half sets (as in RELION's gold-standard refinement). Only the half space
x >= 0 is stored: the transform of a real map is Hermitian.

Grid layout: [z, y, x] with z and y centred at index ``big // 2`` and x from 0, where
``big = pad * box``; grid units are ``pad`` per Fourier pixel of the particle box.
"""

from __future__ import annotations

import torch

from cryosift.fourier import shell_index

#: Shells whose regulariser would exceed this many times the mean weight are treated as empty.
_EMPTY = 1e8


class Backprojector:
    """Accumulators for one reconstruction (one half set, or everything).

    Parameters
    ----------
    box : int
        Particle box in px (even); the map has the same box.
    pad : int
        Oversampling of the 3D transform (>= 2).
    device : torch.device or str, optional
        Where the accumulators live.
    """

    def __init__(self, box: int, pad: int = 2, device=None):
        if pad < 2:
            raise ValueError("the backprojector needs pad >= 2")
        self.box, self.pad = int(box), int(pad)
        self.big = self.pad * self.box
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.max_radius = self.box // 2 - 1  # Fourier px; keeps every trilinear corner inside the grid
        # One tensor holds Re D, Im D and W per grid point, so a single scatter fills all three.
        self.acc = torch.zeros((self.big, self.big, self.big // 2 + 1, 3), dtype=torch.float32, device=self.device)
        self._shells = None
        offsets = [((dz * self.big) + dy) * (self.big // 2 + 1) + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
        self._corner_offsets = torch.tensor(offsets, dtype=torch.int64, device=self.device)

    @property
    def data(self) -> torch.Tensor:
        """D, complex64, shape (big, big, big // 2 + 1) (a copy)."""
        return torch.complex(self.acc[..., 0], self.acc[..., 1])

    @property
    def weight(self) -> torch.Tensor:
        """W, float32, shape (big, big, big // 2 + 1) (a view)."""
        return self.acc[..., 2]

    # ------------------------------------------------------------------ insertion
    def insert(self, freqs: torch.Tensor, values: torch.Tensor, weights: torch.Tensor,
               rotations: torch.Tensor, chunk_points: int = 1 << 19) -> None:
        """Add central sections to the accumulators.

        Parameters
        ----------
        freqs : torch.Tensor
            (kx, ky) of each Fourier coefficient in Fourier px of the box, float, shape (K, 2);
            every |k| must be <= ``max_radius``.
        values : torch.Tensor
            CTF x particle transform (origin undone), complex64, shape (m, K).
        weights : torch.Tensor
            CTF^2 (times any per-particle weight), float32, shape (m, K).
        rotations : torch.Tensor
            RELION rotation matrices of the sections, shape (m, 3, 3).
        chunk_points : int
            Bound on coefficients handled at once (memory).

        Notes
        -----
        A coefficient and its Friedel mate must not both be given unless each carries half
        the weight (the kx = 0 column of an rfft half plane).
        """
        freqs = freqs.to(self.device, torch.float32)
        rot = torch.as_tensor(rotations, device=self.device).to(torch.float32).reshape(-1, 3, 3)
        m, k = values.shape
        step = max(1, chunk_points // max(k, 1))
        for s in range(0, m, step):
            r = rot[s:s + step]
            # Section point q = pad * A^T (kx, ky, 0) in (x, y, z) grid units.
            q = (freqs[None, :, 0:1] * r[:, None, 0, :] + freqs[None, :, 1:2] * r[:, None, 1, :]) * self.pad
            self._scatter(q.reshape(-1, 3), values[s:s + step].reshape(-1).to(self.device),
                          weights[s:s + step].reshape(-1).to(self.device, torch.float32))

    def _scatter(self, q: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> None:
        # Points in the x < 0 half go to their Friedel mate (conjugate value).
        neg = q[:, 0] < 0
        q = torch.where(neg[:, None], -q, q)
        vals = torch.stack([v.real, torch.where(neg, -v.imag, v.imag), w], dim=1)  # (N, 3)
        c = self.big // 2
        g = torch.stack([q[:, 2] + c, q[:, 1] + c, q[:, 0]], dim=1)  # (z, y, x) grid coordinates
        g0 = torch.floor(g)
        f = g - g0
        i0 = g0.to(torch.int64)
        base = (i0[:, 0] * self.big + i0[:, 1]) * (self.big // 2 + 1) + i0[:, 2]
        fz, fy, fx = (torch.stack([1.0 - f[:, i], f[:, i]], dim=1) for i in range(3))
        kern = (fz[:, :, None, None] * fy[:, None, :, None] * fx[:, None, None, :]).reshape(-1, 8)
        idx = (base[:, None] + self._corner_offsets[None, :]).reshape(-1)
        self.acc.view(-1, 3).index_add_(0, idx, (kern[:, :, None] * vals[:, None, :]).reshape(-1, 3))

    def add(self, other: "Backprojector", scale: float = 1.0) -> None:
        """Add another backprojector's accumulators (same box and pad), times ``scale``."""
        self.acc.add_(other.acc, alpha=scale)

    def scale(self, factor: float) -> None:
        """Multiply both accumulators (running averages in ab initio)."""
        self.acc.mul_(factor)

    # ------------------------------------------------------------------ read-out
    def hermitian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulators with the x = 0 plane made Hermitian (mates of points just across it added)."""
        data, weight = self.data, self.weight.clone()
        d0, w0 = data[:, :, 0], weight[:, :, 0]
        # Index j on z/y holds coordinate j - big/2; its mate -(j - big/2) sits at big - j.
        mate_d = torch.roll(torch.flip(d0, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
        mate_w = torch.roll(torch.flip(w0, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
        data[:, :, 0] = d0 + mate_d.conj()
        weight[:, :, 0] = w0 + mate_w
        return data, weight

    def shell_index(self, box: int | None = None) -> torch.Tensor:
        """Fourier shell (round(|k|) in Fourier px of the box) of each grid point, int64."""
        if box is None and self._shells is not None:
            return self._shells
        b = self.big if box is None else self.pad * box
        # z and y centred on b // 2, x from 0 (the half-volume layout of this grid)
        shells = shell_index(b, 3, centred=True, pad=self.pad, tensor=True, device=self.device)
        if box is None:
            self._shells = shells
        return shells

    def shell_mean_weight(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean accumulated weight per shell, float32, shape (box // 2 + 1,)."""
        w = self.hermitian()[1] if weight is None else weight
        shells = self.shell_index()
        n = self.box // 2 + 1
        keep = shells < n
        total = torch.bincount(shells[keep], weights=w[keep].to(torch.float64), minlength=n)
        count = torch.bincount(shells[keep], minlength=n).clamp_min(1)
        return (total / count).to(torch.float32)

    def volume(self, regulariser: torch.Tensor | None = None, box: int | None = None,
               max_radius: float | None = None, gridding: bool = True, floor: float = 1e-3) -> torch.Tensor:
        """The map D / (W + regulariser), in real space.

        Parameters
        ----------
        regulariser : torch.Tensor, optional
            1 / tau^2 per shell in weight units, shape (box // 2 + 1,); default none
            (weights are only floored at ``floor`` times their shell mean).
        box : int, optional
            Output box in px (<= the backprojector's box): a Fourier-cropped map with
            voxel size ``pixel_size * self.box / box``, scaled so that its projections'
            transforms (:class:`cryosift.projection.Projector`) match the inserted data.
            Default: full box.
        max_radius : float, optional
            Low-pass: zero the transform beyond this many Fourier px (of the full box).
        gridding : bool
            Divide by the real-space footprint of trilinear insertion.
        floor : float
            Weights below ``floor`` x their shell mean are raised to it (no division by ~0).

        Returns
        -------
        torch.Tensor
            float32, shape (box, box, box), indexed [z, y, x], centre at voxel box // 2.
        """
        b = self.box if box is None else int(box)
        data, weight = self.hermitian()
        shells = self.shell_index()
        n = self.box // 2 + 1
        mean_w = self.shell_mean_weight(weight)
        sh = shells.clamp_max(n - 1)
        denom = weight.clone()
        if regulariser is not None:
            reg = torch.as_tensor(regulariser, device=self.device, dtype=torch.float32)
            denom = denom + reg[sh]
        denom = torch.maximum(denom, floor * mean_w[sh])
        ft = torch.where(denom > 0, data / denom.clamp_min(1e-30), torch.zeros_like(data))
        limit = self.max_radius if max_radius is None else min(float(max_radius), self.max_radius)
        ft = torch.where(shells <= limit, ft, torch.zeros_like(ft))
        if regulariser is not None:
            empty = reg >= _EMPTY * mean_w.clamp_min(1e-30)
            ft = torch.where(empty[sh], torch.zeros_like(ft), ft)
        return self._to_real(ft, b, gridding)

    def _to_real(self, ft: torch.Tensor, b: int, gridding: bool) -> torch.Tensor:
        pb = self.pad * b
        c = self.big // 2
        ft = ft[c - pb // 2:c + pb // 2, c - pb // 2:c + pb // 2, :pb // 2 + 1]
        ft = torch.fft.ifftshift(ft, dim=(0, 1))
        real = torch.fft.fftshift(torch.fft.irfftn(ft, s=(pb, pb, pb)))
        o = pb // 2 - b // 2
        vol = real[o:o + b, o:o + b, o:o + b]
        if gridding:
            s = gridding_kernel(b, self.pad, self.device)
            vol = vol / (s[:, None, None] * s[None, :, None] * s[None, None, :])
        return vol.contiguous()


def spectral_snr(half1: Backprojector, half2: Backprojector) -> torch.Tensor:
    """Per-shell correlation of two independent half-set reconstructions, in Fourier space.

    The unregularised estimates D / W of both halves are compared voxel by voxel within
    each shell; this is the half-set FSC on the oversampled grid and drives the Wiener
    regulariser, not a validation statistic.

    Returns
    -------
    torch.Tensor
        float32, shape (box // 2 + 1,), values in [-1, 1].
    """
    n = half1.box // 2 + 1
    shells = half1.shell_index()
    keep = shells < n
    sh = shells[keep]
    est = []
    for hp in (half1, half2):
        d, w = hp.hermitian()
        mean_w = hp.shell_mean_weight(w)
        e = d / torch.maximum(w, 1e-3 * mean_w[shells.clamp_max(n - 1)]).clamp_min(1e-30)
        est.append(e[keep])
    # Voxels off the x = 0 plane stand for two Fourier coefficients (themselves and their mate).
    mult = torch.where(torch.zeros_like(shells, dtype=torch.bool).index_fill_(2, torch.tensor([0], device=shells.device), True),
                       1.0, 2.0)[keep].to(torch.float64)
    a, b = est
    num = torch.bincount(sh, weights=mult * (a * b.conj()).real.to(torch.float64), minlength=n)
    pa = torch.bincount(sh, weights=mult * a.abs().to(torch.float64) ** 2, minlength=n)
    pb = torch.bincount(sh, weights=mult * b.abs().to(torch.float64) ** 2, minlength=n)
    fsc = num / torch.sqrt(pa * pb).clamp_min(1e-300)
    return fsc.to(torch.float32)


def wiener_regulariser(fsc_half: torch.Tensor, mean_weight: torch.Tensor, full: bool) -> torch.Tensor:
    """Per-shell 1 / tau^2 from the half-set correlation (RELION's tau^2 = SSNR / <W>).

    Parameters
    ----------
    fsc_half : torch.Tensor
        Half-set correlation per shell, shape (n_shells,).
    mean_weight : torch.Tensor
        Mean accumulated weight per shell of the reconstruction being regularised.
    full : bool
        The reconstruction holds both halves (SSNR = 2 FSC / (1 - FSC)) rather than one
        (SSNR = FSC / (1 - FSC)).

    Returns
    -------
    torch.Tensor
        float32, shape (n_shells,); very large where the halves do not correlate.
    """
    f = fsc_half.clamp(1e-6, 1.0 - 1e-6)
    ssnr = (2.0 * f if full else f) / (1.0 - f)
    reg = mean_weight / ssnr
    # The DC term and the first shell are always well measured; never damp them.
    reg[:2] = 0.0
    # Past the first shell where the halves stop correlating, treat everything as noise.
    bad = torch.nonzero(fsc_half[2:] <= 0.0)
    if len(bad):
        cut = int(bad[0]) + 2
        reg[cut:] = torch.maximum(reg[cut:], _EMPTY * mean_weight[cut:])
    return reg.to(torch.float32)


def gridding_kernel(box: int, pad: int, device=None) -> torch.Tensor:
    """Real-space footprint of trilinear interpolation on a grid oversampled ``pad`` times, shape (box,)."""
    r = (torch.arange(box, device=device, dtype=torch.float32) - box // 2) / (pad * box)
    return torch.sinc(r) ** 2

