"""Train (or fine-tune) the scoring network: MSE on the grade target, the published recipe.

Recipe (CryoSift paper): mean-squared error between the network output and
``0.2 (5 - grade)``, Adam with learning rate 1e-4 and weight decay 1e-4, batches of 32;
here also random 90-degree rotations and mirrors of every image, and no dropout (see
:class:`TrainSettings`). Validation examples come
from structures never seen in training.

Training is resumable: after every epoch the whole state (weights, optimiser, epoch,
random generator, averaged weights, history) is written atomically to ``<out>.state.pt``;
running again with the same output resumes from it and ends as an uninterrupted run would.
Validation and the saved model use a moving average of the weights (:class:`TrainSettings`);
the model written to ``<out>`` is the epoch with the lowest validation MSE (the last epoch
without validation). A model trained with augmentation scores the mean over the eight
90-degree rotations and mirrors (``ModelConfig.views``), and so does its validation; one
trained without scores (and is validated on) the image as given.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cryosift.device import pick_device
from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path
from cryosift.scoring.checkpoint import ModelConfig, ScoringModel, save_checkpoint
from cryosift.scoring.inference import mean_output
from cryosift.scoring.network import build_network
from cryosift.scoring.training.data import Examples, augment, render_augment

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimisation settings (defaults: the published recipe plus augmentation).

    Attributes
    ----------
    epochs : int
    batch_size : int
    lr, weight_decay : float
        Adam settings.
    augment : bool
        Random 90-degree rotations and mirrors.
    seed : int
        Initial weights (when not fine-tuning), batch order, dropout, augmentation.
    dropout : float
        Dropout probability in training. The published network drops 25 % after every batch
        norm; on small training sets that slows learning and shifts the batch-norm statistics
        between training and use (the network scores worse in eval mode than in training), so
        our recipe trains without it. The weights' layout does not depend on it.
    ema : float
        Validation and the saved model use an exponential moving average of the weights,
        updated after every step with this decay (0: the weights as they are). Averaging
        smooths the step-to-step noise of small-batch Adam; 0.998 spans about 500 steps.
    eval_batch : int
        Examples per forward pass in validation.
    render : float
        Chance per example of the rendering augmentation (:func:`render_augment`: another
        box and RELION's mask); 0 (the shipped recipe's default) draws nothing.
    schedule : str
        ``constant`` learning rate, or ``cosine``: from ``lr`` down to zero over the
        ``epochs`` along half a cosine, step by step, so the last epochs refine rather than
        wander (the epoch count is then part of the recipe: resuming needs the same).
    """

    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    dropout: float = 0.0
    ema: float = 0.998
    eval_batch: int = 128
    schedule: str = "constant"
    render: float = 0.0

    def to_dict(self) -> dict:
        """Settings as plain values; ``render`` only when used, so the shipped recipe reads as before."""
        d = asdict(self)
        if not d["render"]:
            d.pop("render")
        return d


def state_path(out: str | Path) -> Path:
    """Where the resumable training state of model ``out`` is kept."""
    p = Path(out)
    return p.with_name(p.stem + ".state.pt")


def fingerprint(examples: Examples) -> str:
    """Short hash of the training examples (targets, features, image sums) to refuse resuming on other data."""
    h = hashlib.sha256()
    h.update(examples.target.numpy().tobytes())
    h.update(examples.features.numpy().tobytes())
    h.update(examples.images.sum(dim=(1, 2, 3)).numpy().round(3).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def predict_examples(network, examples: Examples, device, batch: int = 128, views: int = 1) -> np.ndarray:
    """Raw network outputs (the [0, 1] target scale) for examples, in eval mode, averaged over ``views``."""
    network.eval()
    out = []
    for s in range(0, len(examples), batch):
        x = examples.images[s:s + batch].to(device)
        f = examples.features[s:s + batch].to(device)
        out.append(mean_output(network, x, f, views).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


class WeightAverage:
    """Exponential moving average of a network's parameters; buffers (batch-norm statistics) are copied.

    The decay after n updates is min(decay, (1 + n) / (10 + n)), so short runs (fine-tuning on
    a few examples) are not held back at the initial weights.
    """

    def __init__(self, network: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in network.state_dict().items()}

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        params = dict(network.named_parameters())
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        self.updates += 1
        for k, v in network.state_dict().items():
            if k in params and d > 0:
                self.state[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.state[k].copy_(v.detach())


SCHEDULES = ("constant", "cosine")


def learning_rate(settings: TrainSettings, step: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of ``total_steps``."""
    if settings.schedule == "cosine" and total_steps > 0:
        return settings.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return settings.lr


def _steps_per_epoch(n: int, size: int) -> int:
    """Batches :func:`_batches` yields per epoch (a last batch of one is dropped)."""
    return sum(1 for s in range(0, n, size) if min(size, n - s) >= 2 or n < 2)


def _batches(n: int, size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for s in range(0, n, size):
        idx = order[s:s + size]
        if len(idx) >= 2 or n < 2:  # batch norm needs two examples
            yield idx


def train(train_set: Examples, out: str | Path, settings: TrainSettings | None = None,
          validation: Examples | None = None, init: ScoringModel | None = None, config: ModelConfig | None = None,
          device=None, provenance: dict | None = None, resume: bool = True) -> dict:
    """Train and write the model (our checkpoint format) to ``out``.

    Parameters
    ----------
    train_set : Examples
        Training examples.
    out : str or Path
        Model file to write; its training state goes to :func:`state_path`.
    settings : TrainSettings, optional
    validation : Examples, optional
        Held-out examples (other structures) for the validation MSE and the choice of epoch.
    init : ScoringModel, optional
        Start from these weights (fine-tuning); its preprocessing and features are kept.
    config : ModelConfig, optional
        Preprocessing/features/decode of a new model (default: our defaults; ignored with ``init``).
    device : str or torch.device, optional
        Default: the GPU when present.
    provenance : dict, optional
        Extra plain values for the model card entries of the checkpoint.
    resume : bool
        Continue from an existing training state (same data and settings).

    Returns
    -------
    dict
        ``history`` (per epoch: train and validation MSE, seconds), ``best_epoch``, ``val_mse``,
        ``train_s``.
    """
    s = settings or TrainSettings()
    if s.schedule not in SCHEDULES:
        raise InputError(None, f"learning-rate schedule must be one of {', '.join(SCHEDULES)}, not {s.schedule!r}")
    if len(train_set) < 2:
        raise InputError(None, f"need at least 2 training examples, got {len(train_set)}")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if init is not None:
        net = build_network()
        net.load_state_dict(init.network.state_dict())
        cfg = ModelConfig(init.config.preprocessing, init.config.features, "grade",
                          provenance={"fine_tuned_from": str(init.source) if init.source else "given weights"})
        if init.config.decode != "grade":
            log.warning("fine-tuning published weights: the new model uses the grade decode")
    else:
        net = build_network(seed=s.seed)
        cfg = config or ModelConfig()
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = float(s.dropout)
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    gen = torch.Generator().manual_seed(int(s.seed))
    # A constant rate may resume with more epochs; a schedule depends on their number.
    fixed = s.to_dict() if s.schedule != "constant" else {
        k: v for k, v in s.to_dict().items() if k not in ("epochs", "schedule")}
    key = {"data": fingerprint(train_set), "settings": fixed,
           "validation": fingerprint(validation) if validation is not None and len(validation) else None}
    avg = WeightAverage(net, s.ema)
    shadow = build_network().to(dev)  # evaluates the averaged weights
    history: list = []
    best = {"epoch": -1, "val_mse": math.inf, "state": None}
    start = 0
    spath = state_path(out)
    if resume and spath.exists():
        st = torch.load(spath, map_location="cpu", weights_only=True)
        if st.get("key") != key:
            raise InputError(spath, "training state from other data or settings: delete it to start afresh")
        net.load_state_dict(st["model_state_dict"])
        opt.load_state_dict(st["optimizer_state_dict"])
        avg.state = {k: v.to(dev) for k, v in st["average_state_dict"].items()}
        avg.updates = int(st["average_updates"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        history, start = list(st["history"]), int(st["epoch"])
        best = {"epoch": int(st["best_epoch"]), "val_mse": float(st["best_val_mse"]), "state": st["best_state"]}
        log.info("resuming from %s at epoch %d of %d", spath, start, s.epochs)
    else:
        torch.manual_seed(int(s.seed))
    # Validate as the saved model will score: over the eight views only when trained on them.
    views = cfg.views if s.augment else 1
    n = len(train_set)
    steps = _steps_per_epoch(n, s.batch_size)
    t_all = time.perf_counter()
    for epoch in range(start, s.epochs):
        t0 = time.perf_counter()
        net.train()
        total, count = 0.0, 0
        for step, idx in enumerate(_batches(n, s.batch_size, gen)):
            for group in opt.param_groups:
                group["lr"] = learning_rate(s, epoch * steps + step, s.epochs * steps)
            x = train_set.images[idx]
            if s.render > 0:
                x = render_augment(x, train_set.diameter_px[idx], gen, s.render)
            if s.augment:
                x = augment(x, gen)
            x, f, y = x.to(dev), train_set.features[idx].to(dev), train_set.target[idx].to(dev)
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(net(x, f)[:, 0], y)
            loss.backward()
            opt.step()
            avg.update(net)
            total += loss.item() * len(idx)
            count += len(idx)
        row = {"epoch": epoch + 1, "train_mse": total / max(1, count), "seconds": round(time.perf_counter() - t0, 2)}
        if validation is not None and len(validation):
            shadow.load_state_dict(avg.state)
            pred = predict_examples(shadow, validation, dev, s.eval_batch, views=views)
            row["val_mse"] = float(np.mean((pred - validation.target.numpy()) ** 2))
            if row["val_mse"] < best["val_mse"]:
                best = {"epoch": epoch + 1, "val_mse": row["val_mse"],
                        "state": {k: v.detach().cpu().clone() for k, v in avg.state.items()}}
        history.append(row)
        log.info("epoch %d/%d: train MSE %.4f%s (%.1f s)", epoch + 1, s.epochs, row["train_mse"],
                 f", validation MSE {row['val_mse']:.4f}" if "val_mse" in row else "", row["seconds"])
        state = {"key": key, "epoch": epoch + 1, "history": history, "generator": gen.get_state(),
                 "torch_rng": torch.get_rng_state(),
                 "model_state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                 "average_state_dict": {k: v.detach().cpu() for k, v in avg.state.items()},
                 "average_updates": avg.updates,
                 "optimizer_state_dict": opt.state_dict(), "best_epoch": best["epoch"],
                 "best_val_mse": best["val_mse"], "best_state": best["state"]}
        with atomic_path(spath) as tmp:
            torch.save(state, tmp)
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    elif history:
        net.load_state_dict(avg.state)
    net.eval()
    chosen = best["epoch"] if best["state"] is not None else (history[-1]["epoch"] if history else 0)
    result = {"history": history, "best_epoch": chosen,
              "val_mse": best["val_mse"] if math.isfinite(best["val_mse"]) else None,
              "train_s": round(sum(h["seconds"] for h in history), 1), "examples": n,
              "validation_examples": len(validation) if validation is not None else 0}
    prov = {**cfg.provenance, **(provenance or {}), "recipe": s.to_dict(), "epoch": chosen,
            "validation_mse": result["val_mse"], "train_examples": n,
            "validation_examples": result["validation_examples"]}
    # Scored over the eight rotations and mirrors only when trained on them.
    cfg = ModelConfig(cfg.preprocessing, cfg.features, cfg.decode, views=views, provenance=prov)
    save_checkpoint(out, net.cpu(), cfg, seed=s.seed, extra={"epoch": chosen})
    log.info("wrote %s (epoch %d, validation MSE %s) in %.0f s", out, chosen, result["val_mse"],
             time.perf_counter() - t_all)
    return result
