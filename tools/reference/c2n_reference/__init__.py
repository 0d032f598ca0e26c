"""PyTorch reference for the code2nl model, written from docs/reference-semantics.md (§4, §5, §6.1).

Nothing here is copied from the upstream CodeBERT/CodeXGLUE code: it is an independent
implementation of the behaviour the spec describes, used to produce parity fixtures for the
Rust crates (see ``tools/reference/make_model_fixtures.py``).

Modules:
- ``config``: the Hugging Face RoBERTa ``config.json`` fields plus the decoder fields.
- ``model``: RoBERTa encoder (§4.2), ``nn.TransformerDecoder`` (§4.3), ``Seq2Seq`` with the
  teacher-forced loss (§4.4, §5) and the full-prefix decoding step of §6.1.
- ``checkpoint``: run.py-style ``pytorch_model.bin`` (311 keys, tied ``lm_head``) and
  safetensors export/import.

Usage::

    import sys; sys.path.insert(0, "tools/reference")
    from c2n_reference import ModelConfig, Seq2Seq
    model = Seq2Seq(ModelConfig.small()).eval()
"""

from .config import ModelConfig
from .model import Seq2Seq, padding_aware_position_ids, causal_mask
from .checkpoint import (
    save_pytorch_bin,
    save_safetensors,
    load_checkpoint,
    load_state_dict_file,
)

__all__ = [
    "ModelConfig",
    "Seq2Seq",
    "padding_aware_position_ids",
    "causal_mask",
    "save_pytorch_bin",
    "save_safetensors",
    "load_checkpoint",
    "load_state_dict_file",
]
