"""Checkpoints in the run.py key layout (§4.6).

- ``pytorch_model.bin``: ``torch.save(model.state_dict())`` as run.py writes it (zip format,
  311 keys, ``lm_head.weight`` sharing storage with the word embeddings, ``bias`` included).
- ``model.safetensors``: safetensors forbids aliasing, so ``lm_head.weight`` is dropped (and,
  optionally, the ``bias`` buffer, which can be rebuilt); loaders re-tie / rebuild them.
"""

import os

import torch

from .config import ModelConfig
from .model import CAUSAL_BUFFER_SIZE, Seq2Seq

TIED_KEY = "lm_head.weight"
WORD_EMBEDDINGS_KEY = "encoder.embeddings.word_embeddings.weight"


def save_pytorch_bin(model: Seq2Seq, path) -> None:
    torch.save(model.state_dict(), path)


def save_safetensors(model: Seq2Seq, path, include_bias: bool = False, include_lm_head: bool = False) -> None:
    from safetensors.torch import save_file

    state = {}
    for key, value in model.state_dict().items():
        if key == TIED_KEY and not include_lm_head:
            continue
        if key == "bias" and not include_bias:
            continue
        state[key] = value.detach().clone().contiguous()
    save_file(state, str(path))


def load_state_dict_file(path) -> dict:
    """Read a ``.bin`` (torch.save) or ``.safetensors`` state dict onto the CPU."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(folder, strict: bool = True) -> Seq2Seq:
    """Build a model from ``folder/config.json`` and load its weights.

    With ``strict=True`` this is the reference's ``load_state_dict`` (every key of §4.6 present,
    nothing extra): the test that a checkpoint written by the Rust side is PyTorch-loadable.
    With ``strict=False`` a missing ``bias``/``lm_head.weight`` is rebuilt/re-tied and a
    ``encoder.embeddings.position_ids`` buffer is ignored.
    """
    cfg = ModelConfig.from_json(os.path.join(folder, "config.json"))
    model = Seq2Seq(cfg)
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            break
    else:
        raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin")
    state = load_state_dict_file(path)
    if not strict:
        state.pop("encoder.embeddings.position_ids", None)
        state.setdefault("bias", torch.tril(torch.ones(CAUSAL_BUFFER_SIZE, CAUSAL_BUFFER_SIZE)))
        state.setdefault(TIED_KEY, state[WORD_EMBEDDINGS_KEY])
    model.load_state_dict(state, strict=True)
    if TIED_KEY in state and not torch.equal(state[TIED_KEY], state[WORD_EMBEDDINGS_KEY]):
        raise ValueError(f"{path}: {TIED_KEY} differs from {WORD_EMBEDDINGS_KEY}")
    return model


if __name__ == "__main__":
    # python3 -m c2n_reference.checkpoint DIR: strict-load a checkpoint folder written by Rust.
    import sys

    m = load_checkpoint(sys.argv[1], strict=True)
    print(f"strict load ok: {len(m.state_dict())} keys")
