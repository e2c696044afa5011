"""A plain PyTorch SASRec as described in the paper, for speed comparison only.

Kang & McAuley (ICDM 2018), written the straightforward way, as the widely used ports do:
every sequence is left-padded to ``max_length``; a Python sampler builds each user's
(input, positive, negative) rows one by one, drawing negatives outside the user's history;
each block is layer norm -> multi-head attention (with a causal mask and explicit timeline
masking of padded positions) -> residual -> layer norm -> point-wise feed-forward (two 1x1
convolutions) -> residual; the loss is binary cross-entropy on one positive and one sampled
negative per position. No bucketing, no fused kernels, no loss masking tricks.

It is not part of the library: benchmarks/sequential.py times one epoch of it beside one
epoch of tastemaker's SASRec on the same data and threads.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class PointWiseFeedForward(nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(hidden, hidden, kernel_size=1)
        self.dropout1 = nn.Dropout(dropout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(hidden, hidden, kernel_size=1)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout2(self.conv2(self.relu(self.dropout1(self.conv1(x.transpose(-1, -2))))))
        return out.transpose(-1, -2) + x


class PlainSASRec(nn.Module):
    def __init__(self, n_items: int, hidden: int = 64, max_length: int = 50, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_length, hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.attention_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.attentions = nn.ModuleList(nn.MultiheadAttention(hidden, heads, dropout) for _ in range(blocks))
        self.forward_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.forwards = nn.ModuleList(PointWiseFeedForward(hidden, dropout) for _ in range(blocks))
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.hidden = hidden

    def log2feats(self, seqs: torch.Tensor) -> torch.Tensor:
        x = self.item_emb(seqs) * self.hidden**0.5
        positions = torch.arange(seqs.shape[1]).unsqueeze(0).expand(seqs.shape[0], -1)
        x = self.emb_dropout(x + self.pos_emb(positions))
        timeline_mask = seqs == 0
        x = x * ~timeline_mask.unsqueeze(-1)
        length = x.shape[1]
        causal = ~torch.tril(torch.ones((length, length), dtype=torch.bool))
        for i in range(len(self.attentions)):
            x = x.transpose(0, 1)
            q = self.attention_norms[i](x)
            out, _ = self.attentions[i](q, x, x, attn_mask=causal)
            x = (q + out).transpose(0, 1)
            x = self.forwards[i](self.forward_norms[i](x))
            x = x * ~timeline_mask.unsqueeze(-1)
        return self.last_norm(x)

    def forward(self, seqs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.log2feats(seqs)
        return (feats * self.item_emb(pos)).sum(-1), (feats * self.item_emb(neg)).sum(-1)


def sample_user(sequence: np.ndarray, n_items: int, max_length: int, rng: np.random.Generator):
    """One user's left-padded (input, positive, negative) rows, built position by position."""
    seq = np.zeros(max_length, dtype=np.int64)
    pos = np.zeros(max_length, dtype=np.int64)
    neg = np.zeros(max_length, dtype=np.int64)
    items = [int(i) + 1 for i in sequence]
    seen = set(items)
    nxt = items[-1]
    idx = max_length - 1
    for item in reversed(items[:-1]):
        seq[idx] = item
        pos[idx] = nxt
        candidate = int(rng.integers(1, n_items + 1))
        while candidate in seen:
            candidate = int(rng.integers(1, n_items + 1))
        neg[idx] = candidate
        nxt = item
        idx -= 1
        if idx == -1:
            break
    return seq, pos, neg


def train_epoch(model: PlainSASRec, optimizer: torch.optim.Optimizer, sequences: list[np.ndarray], n_items: int,
                max_length: int, batch_size: int, rng: np.random.Generator) -> float:
    """One epoch: every user once, in random order. Returns seconds."""
    start = time.perf_counter()
    model.train()
    bce = nn.BCEWithLogitsLoss()
    users = [u for u in rng.permutation(len(sequences)) if len(sequences[u]) >= 2]
    for b in range(0, len(users), batch_size):
        rows = [sample_user(sequences[u], n_items, max_length, rng) for u in users[b : b + batch_size]]
        seq, pos, neg = (torch.from_numpy(np.stack(col)) for col in zip(*rows, strict=True))
        pos_logits, neg_logits = model(seq, pos, neg)
        mask = pos != 0
        loss = bce(pos_logits[mask], torch.ones_like(pos_logits[mask])) + bce(
            neg_logits[mask], torch.zeros_like(neg_logits[mask])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def score_last(model: PlainSASRec, sequences: list[np.ndarray], max_length: int) -> torch.Tensor:
    """Full-catalog scores from each sequence's last position (for a quality check)."""
    model.eval()
    seqs = np.zeros((len(sequences), max_length), dtype=np.int64)
    for row, s in enumerate(sequences):
        tail = np.asarray(s[-max_length:], dtype=np.int64) + 1
        seqs[row, max_length - len(tail):] = tail
    with torch.inference_mode():
        feats = model.log2feats(torch.from_numpy(seqs))[:, -1]
        return feats @ model.item_emb.weight[1:].T
