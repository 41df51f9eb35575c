"""Scoring models on disk: our checkpoint format, and published CryoSift checkpoints.

A checkpoint is a dict saved with :func:`torch.save` holding ``model_state_dict`` and, for
our models, a ``cryosift`` dict of plain values: format version, preprocessing, feature
scaling, decode convention and provenance (training data, seed, date, package version).
A checkpoint without it (as published: ``epoch``, ``train_ind``, ``val_ind``,
``model_state_dict``, ``optimizer_state_dict``) gets the published preprocessing, features
and decode. Checkpoints are always loaded with ``weights_only=True``.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import atomic_path
from cryosift.scoring.decode import DECODE_CONVENTIONS
from cryosift.scoring.features import DEFAULT_FEATURES, PUBLISHED_FEATURES, FeatureSpec
from cryosift.scoring.network import CryoSiftNet, build_network
from cryosift.scoring.preprocess import DEFAULT_PREPROCESSING, PUBLISHED_PREPROCESSING, Preprocessing

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
VIEW_COUNTS = (1, 8)


@dataclass(frozen=True)
class ModelConfig:
    """Everything besides the weights that scoring with a model needs.

    Attributes
    ----------
    preprocessing : Preprocessing
        How class averages become network input.
    features : FeatureSpec
        How per-class features are scaled.
    decode : {"published", "grade"}
        How network output becomes a score (:mod:`cryosift.scoring.decode`).
    views : {1, 8}
        Network outputs averaged per class average: 8 is the mean over the four 90-degree
        rotations of the image and of its mirror, so the score does not depend on how the
        classification happened to orient the average (our models are trained on all eight);
        1 is the image as stored (published weights, and checkpoints saved without the entry).
    provenance : dict
        Plain values describing where the weights came from.
    published : bool
        True for a checkpoint without our metadata (published CryoSift weights).
    """

    preprocessing: Preprocessing = DEFAULT_PREPROCESSING
    features: FeatureSpec = DEFAULT_FEATURES
    decode: str = "grade"
    views: int = 8
    provenance: dict = field(default_factory=dict)
    published: bool = False

    def __post_init__(self):
        if self.decode not in DECODE_CONVENTIONS:
            raise ValueError(f"unknown decode convention {self.decode!r}")
        if self.views not in VIEW_COUNTS:
            raise ValueError(f"views must be one of {VIEW_COUNTS}, got {self.views!r}")

    def to_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "preprocessing": self.preprocessing.to_dict(),
            "features": self.features.to_dict(),
            "decode": self.decode,
            "views": self.views,
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(preprocessing=Preprocessing.from_dict(d.get("preprocessing", {})),
                   features=FeatureSpec.from_dict(d.get("features", {})),
                   decode=d.get("decode", "grade"),
                   views=int(d.get("views", 1)),
                   provenance=dict(d.get("provenance", {})))

    def describe(self) -> str:
        """One line for logs and output headers."""
        p = self.preprocessing
        size = f"{p.input_size} px" + (f" at {p.pixel_size:g} Å/px" if p.pixel_size else "")
        kind = "published CryoSift weights" if self.published else "cryosift model"
        views = ", mean of 8 views" if self.views == 8 else ""
        return f"{kind}: {p.mode} preprocessing ({size}, {p.normalisation}), {self.decode} decode{views}"


#: Configuration given to checkpoints that carry no metadata (published weights).
PUBLISHED_CONFIG = ModelConfig(preprocessing=PUBLISHED_PREPROCESSING, features=PUBLISHED_FEATURES,
                               decode="published", views=1, provenance={"source": "published CryoSift checkpoint"},
                               published=True)


@dataclass
class ScoringModel:
    """A network in eval mode with the configuration it was trained under.

    Attributes
    ----------
    network : CryoSiftNet
    config : ModelConfig
    source : Path or None
        The checkpoint it was loaded from.
    """

    network: CryoSiftNet
    config: ModelConfig
    source: Path | None = None

    def to(self, device) -> "ScoringModel":
        self.network.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def save_checkpoint(path: str | Path, network: CryoSiftNet, config: ModelConfig, *, data: str | None = None,
                    seed: int | None = None, date: str | None = None, extra: dict | None = None) -> Path:
    """Save a model as our checkpoint format, atomically.

    Parameters
    ----------
    path : str or Path
        Output ``.pt`` file.
    network : CryoSiftNet
        The trained network.
    config : ModelConfig
        Preprocessing, features and decode the network was trained with.
    data, seed, date : optional
        Provenance: training data description, random seed, ISO date (default: today, UTC).
        They are merged into ``config.provenance`` together with the package version.
    extra : dict, optional
        More entries for the saved dict (e.g. ``epoch``, ``optimizer_state_dict``).
    """
    from cryosift import __version__

    meta = config.to_dict()
    prov = meta["provenance"]
    prov.setdefault("package_version", __version__)
    if data is not None:
        prov["data"] = data
    if seed is not None:
        prov["seed"] = int(seed)
    prov["date"] = date or prov.get("date") or _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    payload = {**(extra or {}), "model_state_dict": state, "cryosift": meta}
    out = Path(path)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


def _state_dict_from(path: Path, obj) -> dict:
    if isinstance(obj, dict) and "model_state_dict" in obj:
        state = obj["model_state_dict"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a bare state_dict
    else:
        raise InputError(path, "not a CryoSift checkpoint (no model_state_dict)")
    if not isinstance(state, dict):
        raise InputError(path, "model_state_dict is not a dict of tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_state_dict(path: Path, network: CryoSiftNet, state: dict) -> None:
    """Raise InputError naming missing, unexpected or mis-shaped keys."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''})")
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        problems.append(f"shape mismatch: {'; '.join(shapes[:3])}")
    if problems:
        raise InputError(path, "weights do not fit the CryoSift network: " + ", ".join(problems))


def load_checkpoint(path: str | Path, device=None) -> ScoringModel:
    """Load a scoring model (ours or published CryoSift weights) in eval mode.

    Parameters
    ----------
    path : str or Path
        A ``.pt``/``.pth`` checkpoint.
    device : str or torch.device, optional
        Where to put the network (default CPU).

    Raises
    ------
    InputError
        Unreadable file, no state dict, keys or shapes that do not fit, bad metadata.
    """
    p = require_file(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safety errors have many types
        raise InputError(p, f"not a loadable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    state = _state_dict_from(p, obj)
    meta = obj.get("cryosift") if isinstance(obj, dict) else None
    if meta is None:
        config = PUBLISHED_CONFIG
        log.info("%s has no cryosift metadata: using the published preprocessing, features and decode", p)
    else:
        if not isinstance(meta, dict):
            raise InputError(p, "the cryosift metadata entry is not a dict")
        if int(meta.get("format", CHECKPOINT_FORMAT)) > CHECKPOINT_FORMAT:
            raise InputError(p, f"checkpoint format {meta['format']} is newer than this cryosift understands")
        try:
            config = ModelConfig.from_dict(meta)
        except (TypeError, ValueError) as exc:
            raise InputError(p, f"bad cryosift metadata: {exc}") from None
    network = build_network()
    check_state_dict(p, network, state)
    network.load_state_dict(state, strict=True)
    network.eval()
    if device is not None:
        network.to(device)
    return ScoringModel(network, config, p)
