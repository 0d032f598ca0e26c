"""Model configuration: Hugging Face RoBERTa ``config.json`` fields + decoder fields.

Decoder fields (not part of a RoBERTa config) are written only when they differ from the
reference defaults (§4.3: 6 layers, heads = encoder heads, ffn 2048, dropout 0.1, relu,
post-norm, eps 1e-5). The Rust ``c2n_model::ModelConfig`` uses the same names.
"""

import dataclasses
import json
from typing import Optional

ENCODER_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)

DECODER_DEFAULTS = {
    "decoder_layers": 6,
    "decoder_attention_heads": None,  # None = same as the encoder
    "decoder_ffn_dim": 2048,
    "decoder_dropout": 0.1,
    "decoder_activation": "relu",
    "decoder_layer_norm_eps": 1e-5,
}


@dataclasses.dataclass
class ModelConfig:
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    decoder_layers: int = 6
    decoder_attention_heads: Optional[int] = None
    decoder_ffn_dim: int = 2048
    decoder_dropout: float = 0.1
    decoder_activation: str = "relu"
    decoder_layer_norm_eps: float = 1e-5

    @property
    def decoder_heads(self) -> int:
        return self.decoder_attention_heads or self.num_attention_heads

    @classmethod
    def small(cls) -> "ModelConfig":
        """The fixture model: real vocabulary, tiny everything else."""
        return cls(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            decoder_layers=2,
            decoder_ffn_dim=32,
        )

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, path) -> "ModelConfig":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        d = {"model_type": "roberta", "architectures": ["RobertaModel"]}
        for name in ENCODER_FIELDS:
            d[name] = getattr(self, name)
        for name, default in DECODER_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                d[name] = value
        return d

    def save_json(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
