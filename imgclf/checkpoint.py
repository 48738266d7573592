"""Checkpoints: a training stage killed mid-way (a Slurm time limit, a preempted node, Ctrl-C,
kill -9) resumes from its last finished epoch and ends as if it had never stopped.

A checkpoint holds everything that decides the epochs still to come: the weights, the
optimiser's moments and its groups' settings, the gradient scaler, the random states (torch's,
the training loader's shuffling generator's, numpy's and Python's) and the history so far. It
is written with safetensors (tensors) and JSON (the rest) in one file, never with pickle, under
a name that Snakemake does not treat as an output, so it survives a failed job. Its key says
what made the run (split, pack, settings, starting weights, this package's code): a checkpoint
with another key belongs to another run and is ignored, with a log line.
"""

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .files import atomic_path

log = logging.getLogger(__name__)


def code_version() -> str:
    """A digest of this package's source: a checkpoint from other code is not resumed."""
    digest = hashlib.sha256(torch.__version__.encode())
    for source in sorted(files("imgclf").iterdir(), key=lambda entry: entry.name):
        if source.name.endswith(".py"):
            digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def run_key(**made_of) -> str:
    """The key of a training run: a digest of what made it (JSON-able values) and the code."""
    text = json.dumps({**made_of, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Resumed:
    """Where a resumed run stands: the epochs finished, their history rows and step records."""

    epochs_done: int
    history: list[dict]
    steps: list[dict]


@dataclass
class Checkpoint:
    """A stage's checkpoint file and the key of the run that may resume from it."""

    path: Path
    key: str

    def save(self, epochs_done, model, optimizer, scaler, generator, history, steps) -> None:
        """After an epoch: the whole training state, atomically (a kill mid-write leaves the
        previous checkpoint)."""
        tensors = {f"model.{name}": t.detach().cpu() for name, t in model.state_dict().items()}
        optimiser_state = optimizer.state_dict()
        for index, state in optimiser_state["state"].items():
            for name, value in state.items():
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.loader"] = generator.get_state()
        if torch.cuda.is_available():
            for device, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{device}"] = state
        numpy_state = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(numpy_state[1].astype(np.int64))
        state = {
            "key": self.key,
            "epochs_done": epochs_done,
            "history": history,
            "steps": steps,
            "optimizer_groups": optimiser_state["param_groups"],
            "scaler": scaler.state_dict(),
            "numpy_rng": [numpy_state[0], *map(float, numpy_state[2:])],
            "python_rng": random.getstate(),
        }
        tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
        with atomic_path(self.path) as tmp:
            save_file(tensors, tmp, metadata={"imgclf": json.dumps(state)})

    def restore(self, model, optimizer, scaler, generator) -> Resumed | None:
        """Load the checkpoint into the model, optimiser, scaler and random states when it is
        this run's; None (and a log line saying why) when there is none to resume."""
        if not self.path.exists():
            return None
        try:
            with safe_open(self.path, "pt") as file:
                state = json.loads(file.metadata()["imgclf"])
            tensors = load_file(self.path)
        except (OSError, ValueError, KeyError, SafetensorError) as error:
            log.warning("ignoring the unreadable checkpoint %s: %s", self.path, error)
            return None
        if state["key"] != self.key:
            log.info(
                "ignoring the checkpoint %s: it is from another split, config or code",
                self.path,
            )
            return None
        model.load_state_dict(
            {name[6:]: t for name, t in tensors.items() if name.startswith("model.")}, strict=True
        )
        moments: dict[int, dict] = {}
        for name, tensor in tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                moments.setdefault(int(index), {})[key] = tensor
        optimizer.load_state_dict({"state": moments, "param_groups": state["optimizer_groups"]})
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.loader"])
        if torch.cuda.is_available():
            cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count())]
            torch.cuda.set_rng_state_all(cuda)
        kind, position, has_gauss, gauss = state["numpy_rng"]
        keys = tensors["rng.numpy"].numpy().astype(np.uint32)
        np.random.set_state((kind, keys, int(position), int(has_gauss), gauss))
        version, internal, gauss_next = state["python_rng"]
        random.setstate((version, tuple(internal), gauss_next))
        log.info(
            "resuming after epoch %d, the last one finished (checkpoint %s)",
            state["epochs_done"],
            self.path,
        )
        return Resumed(state["epochs_done"], state["history"], state["steps"])
