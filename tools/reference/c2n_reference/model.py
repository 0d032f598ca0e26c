"""The code2nl Seq2Seq model, written from reference-semantics.md §4–§5 and §6.1.

Module and parameter names are chosen so that ``Seq2Seq.state_dict()`` has exactly the 311
keys of §4.6, in the same order (``bias`` first, tied ``lm_head.weight`` last).
"""

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig

CAUSAL_BUFFER_SIZE = 2048


def padding_aware_position_ids(ids: torch.Tensor, pad_id: int = 1) -> torch.Tensor:
    """§4.2: a pad gets position ``pad_id``; a real token ``pad_id + #non-pad tokens so far``."""
    real = ids.ne(pad_id).long()
    return torch.cumsum(real, dim=1) * real + pad_id


def causal_mask(length: int) -> torch.Tensor:
    """§4.4: float32 ``[L, L]``, 0 on and below the diagonal, -10000 above."""
    tril = torch.tril(torch.ones(length, length))
    return -10000.0 * (1.0 - tril)


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class RobertaEmbeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pad_id = cfg.pad_token_id
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(
            cfg.max_position_embeddings, cfg.hidden_size, padding_idx=cfg.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = padding_aware_position_ids(ids, self.pad_id)
        types = torch.zeros_like(ids)
        e = (self.word_embeddings(ids) + self.position_embeddings(positions)) + self.token_type_embeddings(types)
        return self.dropout(self.LayerNorm(e))


class RobertaSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def split(self, x):
        n, s, _ = x.shape
        return x.view(n, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, mask_term):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask_term
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3)
        return ctx.reshape(x.shape)


class DenseLayerNorm(nn.Module):
    """``LayerNorm(dropout(dense(x)) + residual)``: the BERT "output" blocks."""

    def __init__(self, d_in, d_out, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class RobertaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = RobertaSelfAttention(cfg)
        self.output = DenseLayerNorm(cfg.hidden_size, cfg.hidden_size, cfg)

    def forward(self, x, mask_term):
        return self.output(self.self(x, mask_term), x)


class RobertaIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x):
        return gelu_erf(self.dense(x))


class RobertaLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = RobertaAttention(cfg)
        self.intermediate = RobertaIntermediate(cfg)
        self.output = DenseLayerNorm(cfg.intermediate_size, cfg.hidden_size, cfg)

    def forward(self, x, mask_term):
        a = self.attention(x, mask_term)
        return self.output(self.intermediate(a), a)


class RobertaLayers(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([RobertaLayer(cfg) for _ in range(cfg.num_hidden_layers)])


class RobertaPooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class RobertaEncoder(nn.Module):
    """§4.2. Returns the last hidden state ``[n, S, H]`` (pads included)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embeddings = RobertaEmbeddings(cfg)
        self.encoder = RobertaLayers(cfg)
        self.pooler = RobertaPooler(cfg)

    def forward(self, source_ids, source_mask):
        mask_term = (1.0 - source_mask[:, None, None, :].float()) * -10000.0
        h = self.embeddings(source_ids)
        for layer in self.encoder.layer:
            h = layer(h, mask_term)
        self.pooler(h)  # computed and unused, as in the reference
        return h


class Seq2Seq(nn.Module):
    """§4.1: encoder + ``nn.TransformerDecoder`` + ``tanh(dense)`` + tied LM head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("bias", torch.tril(torch.ones(CAUSAL_BUFFER_SIZE, CAUSAL_BUFFER_SIZE)))
        self.encoder = RobertaEncoder(cfg)
        layer = nn.TransformerDecoderLayer(
            d_model=cfg.hidden_size,
            nhead=cfg.decoder_heads,
            dim_feedforward=cfg.decoder_ffn_dim,
            dropout=cfg.decoder_dropout,
            activation=cfg.decoder_activation,
            layer_norm_eps=cfg.decoder_layer_norm_eps,
        )
        # nn.TransformerDecoder deep-copies `layer`: all decoder layers start identical (§4.5).
        self.decoder = nn.TransformerDecoder(layer, num_layers=cfg.decoder_layers)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.encoder.embeddings.word_embeddings.weight  # tied, not copied
        self.sos_id = cfg.bos_token_id
        self.eos_id = cfg.eos_token_id

    def randomize(self, generator: torch.Generator, std: float = 0.02) -> None:
        """Give every parameter a distinct random value (fixtures only).

        Matrices and embeddings ~ N(0, std); biases ~ N(0, std); LayerNorm weights ~ 1 + N(0, 0.1).
        Unlike the reference init, decoder layers end up different from each other, so a
        layer-indexing bug cannot hide behind identical copies.
        """
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "LayerNorm.weight" in name or re.search(r"norm[123]\.weight$", name):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
                else:
                    p.copy_(std * torch.randn(p.shape, generator=generator))

    def encode(self, source_ids, source_mask):
        return self.encoder(source_ids, source_mask)

    def decode_hidden(self, target_ids, memory, source_mask):
        """Decoder stack + ``tanh(dense)``: ``[n, T, H]`` (batch-first in and out)."""
        length = target_ids.shape[1]
        mask = -10000.0 * (1.0 - self.bias[:length, :length])
        x0 = self.encoder.embeddings(target_ids).permute(1, 0, 2).contiguous()
        mem = memory.permute(1, 0, 2).contiguous()
        out = self.decoder(x0, mem, tgt_mask=mask, memory_key_padding_mask=(1 - source_mask).bool())
        return torch.tanh(self.dense(out.permute(1, 0, 2).contiguous()))

    def logits(self, source_ids, source_mask, target_ids):
        """Teacher-forced logits ``[n, T, V]`` (§4.4)."""
        memory = self.encode(source_ids, source_mask)
        return self.lm_head(self.decode_hidden(target_ids, memory, source_mask))

    def forward(self, source_ids, source_mask, target_ids, target_mask):
        """§5: ``(loss, loss * N_act, N_act)``, token mean over the whole batch."""
        logits = self.logits(source_ids, source_mask, target_ids)
        shift_logits = logits[:, :-1, :]
        labels = target_ids[:, 1:]
        active = target_mask[:, 1:].reshape(-1).ne(0)
        loss = F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1))[active],
            labels.reshape(-1)[active],
        )
        n_active = active.sum()
        return loss, loss * n_active, n_active

    @torch.no_grad()
    def next_token_log_probs(self, ids, ctx, ctx_mask):
        """One full-prefix decoding step of §6.1: ``log_softmax`` at the last position, ``[K, V]``.

        ``ids`` is the ``[K, L]`` prefix (starting with ``<s>``), ``ctx``/``ctx_mask`` the
        encoder output and source mask repeated K times.
        """
        h = self.decode_hidden(ids, ctx, ctx_mask)[:, -1, :]
        return torch.log_softmax(self.lm_head(h).float(), dim=-1)
