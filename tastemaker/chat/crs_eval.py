"""Offline evaluation of conversational recommendation on dialogues with gold item mentions
(ReDial's ``@<movieId>``, or the generic JSON Lines form of ``data/loaders/dialogues.py``).

**Turns.** A dialogue's messages are merged into turns: consecutive messages by the same
sender form one turn (its text is theirs joined by newlines, its items their mentions in
order of first appearance, each once). A message by the dialogue's initiator is the
*seeker*'s, one by the respondent the *recommender*'s. An **evaluation turn** is a
recommender turn that mentions at least one item; its **context** is every earlier turn
(text and mentions, both speakers), never the turn itself, and its **targets** are the
distinct items it mentions. On the ReDial test split this gives 4,969 (turn, target) pairs.

**Protocols** (those of the 2026 re-evaluation of ReDial results):

* ``"all"``: every (evaluation turn, target) pair.
* ``"dedup"``: only pairs whose target was not mentioned earlier in the dialogue, i.e. is
  not among the context's items (4,498 on the ReDial test split).

**Ranking.** A scorer gives every catalog item a score per evaluation turn, from the context
alone. The target's rank is pessimistic (it loses every tie; ``-inf`` or NaN never ranks), so
a constant scorer earns nothing. Exclusion rule: under ``"dedup"`` the context's items are
removed from the ranking by default, since such a pair's target can never be one of them
(a rule any deployed system may apply); under ``"all"`` nothing is removed, so repeating a
mentioned item can be right. ``exclude_context`` overrides either default. A target that is
not in the catalog counts as a miss and is reported (``n_targets_outside``).

**Metrics.** Recall@k is the share of pairs whose target ranks within the top k (one target
per pair, so it is also the hit rate); they are reported overall and split by whether the
context holds any item. CARE's two list measures come from each evaluated turn's top
``list_k``: the in-catalog rate (the share of recommended ids that are catalog items: 1 for
a score matrix by construction, below 1 for free-form lists such as an LLM's, see
:func:`evaluate_lists`) and the average popularity rank of the recommended catalog items (1
= the most popular, by the ``popularity`` counts given).

Batch first: :func:`evaluate` takes one score matrix for many turns, and
:func:`evaluate_scorer` calls a scorer on batches of turns, so any model can be measured.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tastemaker.eval.metrics import pessimistic_ranks

Protocol = Literal["all", "dedup"]
PROTOCOLS: tuple[Protocol, ...] = ("all", "dedup")
MENTION = re.compile(r"@(\d+)")
KS = (1, 10, 50)


@dataclass(frozen=True)
class Utterance:
    """One turn: ``speaker`` is ``"seeker"`` or ``"recommender"``; ``items`` are the ids it
    mentions, each once, in order of first appearance."""

    speaker: str
    text: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn:
    """An evaluation turn: what came before it, and what it recommends."""

    dialogue_id: str
    position: int  # index of the turn in its dialogue (merged turns, 0-based)
    context: tuple[Utterance, ...]
    targets: tuple[str, ...]

    @property
    def context_items(self) -> tuple[str, ...]:
        """Items mentioned in the context, each once, in order of first mention."""
        return tuple(dict.fromkeys(i for u in self.context for i in u.items))

    @property
    def context_text(self) -> str:
        return "\n".join(u.text for u in self.context)

    def targets_for(self, protocol: Protocol) -> tuple[str, ...]:
        if protocol == "all":
            return self.targets
        seen = set(self.context_items)
        return tuple(t for t in self.targets if t not in seen)


def merge_turns(messages: Iterable[tuple[str, str, Sequence[str]]]) -> list[Utterance]:
    """(speaker, text, items) messages -> turns, consecutive same-speaker messages merged."""
    turns: list[tuple[str, list[str], list[str]]] = []
    for speaker, text, items in messages:
        if turns and turns[-1][0] == speaker:
            turns[-1][1].append(text)
            turns[-1][2].extend(items)
        else:
            turns.append((speaker, [text], list(items)))
    return [Utterance(s, "\n".join(texts), tuple(dict.fromkeys(items))) for s, texts, items in turns]


def redial_utterances(messages: Sequence[Mapping[str, Any]], initiator: str, respondent: str) -> list[Utterance]:
    """The turns of one dialogue in the ``extras["dialogues"]`` form of the ReDial and generic
    dialogue loaders: items are the ``@id``s in the text plus any ``mentions`` list."""
    rows = []
    for m in messages:
        sender = str(m.get("senderWorkerId", ""))
        if sender == str(initiator):
            speaker = "seeker"
        elif sender == str(respondent):
            speaker = "recommender"
        else:
            speaker = m.get("speaker", "seeker")
        text = str(m.get("text", "") or "")
        items = [str(i) for i in m.get("mentions", None) or ()] + MENTION.findall(text)
        rows.append((str(speaker), text, items))
    return merge_turns(rows)


def extract_turns(dialogues: Iterable[tuple[str, Sequence[Utterance]]]) -> list[Turn]:
    """Evaluation turns of (dialogue id, turns) pairs, in dialogue then turn order."""
    out = []
    for dialogue_id, utterances in dialogues:
        for position, u in enumerate(utterances):
            if u.speaker == "recommender" and u.items:
                out.append(Turn(str(dialogue_id), position, tuple(utterances[:position]), u.items))
    return out


def turns_from_frame(dialogues: Any) -> list[Turn]:
    """Evaluation turns of a loader's ``extras["dialogues"]`` DataFrame (ReDial or generic)."""
    return extract_turns(
        (row.conversation_id, redial_utterances(row.messages, row.initiator, row.respondent))
        for row in dialogues.itertuples(index=False)
    )


@dataclass(frozen=True)
class Pairs:
    """The (turn, target) pairs of one protocol: ``turn[p]`` indexes the turns list,
    ``target[p]`` the catalog (-1 when the target is not in it)."""

    protocol: Protocol
    turn: np.ndarray
    target: np.ndarray
    target_ids: tuple[str, ...]
    has_context: np.ndarray  # the pair's context mentions at least one item

    def __len__(self) -> int:
        return len(self.turn)


def evaluation_pairs(
    turns: Sequence[Turn], item_ids: Sequence[str], protocol: Protocol, *, keep: Callable[[str], bool] | None = None
) -> Pairs:
    """The pairs of ``protocol``; ``keep`` optionally restricts the targets (for example to
    items linked to a knowledge graph, as the published pipelines do)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    index = {str(i): k for k, i in enumerate(item_ids)}
    rows, targets, ids, has_context = [], [], [], []
    for t, turn in enumerate(turns):
        context = bool(turn.context_items)
        for target in turn.targets_for(protocol):
            if keep is not None and not keep(target):
                continue
            rows.append(t)
            ids.append(target)
            targets.append(index.get(target, -1))
            has_context.append(context)
    return Pairs(
        protocol,
        np.asarray(rows, dtype=np.int64),
        np.asarray(targets, dtype=np.int64),
        tuple(ids),
        np.asarray(has_context, dtype=bool),
    )


def pair_counts(turns: Sequence[Turn], keep: Callable[[str], bool] | None = None) -> dict[str, int]:
    """Pairs and turns of each protocol, and the pairs whose context has no item."""
    out: dict[str, int] = {"evaluation_turns": len(turns), "dialogues": len({t.dialogue_id for t in turns})}
    for protocol in PROTOCOLS:
        pairs = evaluation_pairs(turns, [], protocol, keep=keep)
        out[f"pairs_{protocol}"] = len(pairs)
        out[f"turns_{protocol}"] = len(np.unique(pairs.turn))
        out[f"pairs_{protocol}_no_context"] = int((~pairs.has_context).sum())
    return out


@dataclass
class CRSReport:
    protocol: Protocol
    n_pairs: int
    n_turns: int
    recall: dict[int, float]
    recall_with_context: dict[int, float]
    recall_no_context: dict[int, float]
    n_no_context: int
    n_targets_outside: int
    in_catalog_rate: float
    avg_popularity_rank: float
    ranks: np.ndarray = field(repr=False)

    def row(self, ks: Sequence[int] = KS) -> dict[str, Any]:
        """A flat record (for a table or a JSON line)."""
        out: dict[str, Any] = {"protocol": self.protocol, "pairs": self.n_pairs, "turns": self.n_turns}
        out.update({f"R@{k}": self.recall[k] for k in ks})
        out.update({f"R@{k} ctx": self.recall_with_context[k] for k in ks})
        out.update({f"R@{k} no-ctx": self.recall_no_context[k] for k in ks})
        out.update(
            no_context_pairs=self.n_no_context,
            targets_outside=self.n_targets_outside,
            in_catalog_rate=self.in_catalog_rate,
            avg_popularity_rank=self.avg_popularity_rank,
        )
        return out


def recall_at(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """Share of ranks within each cutoff (NaN for no pairs)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return {k: float((ranks <= k).mean()) if len(ranks) else float("nan") for k in ks}


def popularity_ranks(popularity: np.ndarray) -> np.ndarray:
    """1-based rank of each item by ``popularity`` (descending; ties in catalog order)."""
    order = np.argsort(-np.asarray(popularity, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def context_mask(turns: Sequence[Turn], item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) indices of every turn's context items that are in the catalog."""
    index = {str(i): k for k, i in enumerate(item_ids)}
    rows, cols = [], []
    for t, turn in enumerate(turns):
        for item in turn.context_items:
            if item in index:
                rows.append(t)
                cols.append(index[item])
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _report(
    pairs: Pairs, ranks: np.ndarray, top: np.ndarray, n_listed: int, n_listed_in: int,
    popularity: np.ndarray | None, ks: Sequence[int], turns_evaluated: int,
) -> CRSReport:
    if popularity is not None and (top >= 0).any():
        avg_pop = float(popularity_ranks(popularity)[top[top >= 0]].mean())
    else:
        avg_pop = float("nan")
    return CRSReport(
        protocol=pairs.protocol,
        n_pairs=len(pairs),
        n_turns=turns_evaluated,
        recall=recall_at(ranks, ks),
        recall_with_context=recall_at(ranks[pairs.has_context], ks),
        recall_no_context=recall_at(ranks[~pairs.has_context], ks),
        n_no_context=int((~pairs.has_context).sum()),
        n_targets_outside=int((pairs.target < 0).sum()),
        in_catalog_rate=n_listed_in / n_listed if n_listed else float("nan"),
        avg_popularity_rank=avg_pop,
        ranks=ranks,
    )


def evaluate(
    scores: np.ndarray,
    turns: Sequence[Turn],
    item_ids: Sequence[str],
    protocol: Protocol = "dedup",
    *,
    ks: Sequence[int] = KS,
    exclude_context: bool | None = None,
    popularity: np.ndarray | None = None,
    list_k: int = 10,
    keep: Callable[[str], bool] | None = None,
) -> CRSReport:
    """Score matrix (len(turns) x len(item_ids), row i scoring turns[i]) -> the protocol's
    report. ``exclude_context`` defaults to True for ``"dedup"`` and False for ``"all"``;
    ``popularity`` (counts per item) gives the average popularity rank of the top ``list_k``."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if scores.shape != (len(turns), len(item_ids)):
        raise ValueError(f"scores must be {(len(turns), len(item_ids))}, got {scores.shape}")
    if exclude_context if exclude_context is not None else protocol == "dedup":
        scores[context_mask(turns, item_ids)] = -np.inf
    pairs = evaluation_pairs(turns, item_ids, protocol, keep=keep)
    ranks = np.full(len(pairs), np.inf)
    inside = pairs.target >= 0
    if inside.any():
        ranks[inside] = pessimistic_ranks(scores, pairs.turn[inside], pairs.target[inside])
    evaluated = np.unique(pairs.turn)
    top = _top(scores[evaluated], list_k)
    listed = int((top >= 0).sum())
    return _report(pairs, ranks, top, listed, listed, popularity, ks, len(evaluated))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` best columns, best first (ties by column); -1 in place of a column
    whose score is not finite (an excluded item is never listed)."""
    k = min(k, scores.shape[1])
    if not len(scores) or k == 0:
        return np.empty((len(scores), 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(k), (len(scores), 1))
    part.sort(axis=1)  # column order, so that the stable sort below breaks ties by column
    top = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable"), axis=1)
    return np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)


def evaluate_scorer(
    scorer: Callable[[Sequence[Turn]], np.ndarray],
    turns: Sequence[Turn],
    item_ids: Sequence[str],
    protocol: Protocol = "dedup",
    *,
    batch: int = 1024,
    **options: Any,
) -> CRSReport:
    """:func:`evaluate` with the scores of ``scorer(turns_batch) -> (len(batch), n_items)``."""
    blocks = [np.asarray(scorer(turns[i : i + batch]), dtype=np.float32) for i in range(0, len(turns), batch)]
    scores = np.concatenate(blocks) if blocks else np.zeros((0, len(item_ids)), np.float32)
    return evaluate(scores, turns, item_ids, protocol, **options)


def evaluate_lists(
    recommendations: Sequence[Sequence[str]],
    turns: Sequence[Turn],
    item_ids: Sequence[str],
    protocol: Protocol = "dedup",
    *,
    ks: Sequence[int] = KS,
    popularity: np.ndarray | None = None,
    list_k: int = 10,
    keep: Callable[[str], bool] | None = None,
) -> CRSReport:
    """Free-form ranked lists (one per turn, best first, e.g. an LLM's, ids possibly outside
    the catalog) -> the report. A target's rank is its first position in its turn's list
    (inf when absent); no exclusion is applied: the list is taken as given."""
    if len(recommendations) != len(turns):
        raise ValueError(f"need one list per turn: {len(recommendations)} lists for {len(turns)} turns")
    index = {str(i): k for k, i in enumerate(item_ids)}
    pairs = evaluation_pairs(turns, item_ids, protocol, keep=keep)
    positions: list[dict[str, int]] = [{} for _ in recommendations]
    for pos, items in zip(positions, recommendations, strict=True):
        for r, item in enumerate(items, start=1):
            pos.setdefault(str(item), r)
    ranks = np.array(
        [positions[t].get(target, np.inf) for t, target in zip(pairs.turn, pairs.target_ids, strict=True)], dtype=np.float64
    )
    evaluated = np.unique(pairs.turn)
    listed = [[str(i) for i in recommendations[t][:list_k]] for t in evaluated]
    n_listed = sum(len(x) for x in listed)
    codes = np.array([index[i] for x in listed for i in x if i in index], dtype=np.int64)
    return _report(pairs, ranks, codes, n_listed, len(codes), popularity, ks, len(evaluated))


# ---------------------------------------------------------------------- tuning blend weights
#: the weights coordinate ascent tries for each scorer
GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class WeightTuner:
    """Coordinate ascent of blend weights (``sum(weight * feature)``) on R@10 + R@50 under
    ``protocol`` for one set of turns. ``features``: name -> (turns x catalog) matrix, or one
    row broadcast to every turn (a prior)."""

    def __init__(self, features: Mapping[str, np.ndarray], turns: Sequence[Turn], item_ids: Sequence[str],
                 protocol: Protocol = "dedup") -> None:
        pairs = evaluation_pairs(turns, item_ids, protocol)
        keep = pairs.target >= 0
        rows, self.inverse = np.unique(pairs.turn[keep], return_inverse=True)
        self.targets = pairs.target[keep]
        shape = (len(turns), len(item_ids))
        self.features = {k: np.broadcast_to(v, shape)[rows].astype(np.float32) for k, v in features.items()}
        self.mask = context_mask([turns[t] for t in rows], item_ids) if protocol == "dedup" else (np.array([], int),) * 2
        self.shape = (len(rows), len(item_ids))

    def objective(self, scores: np.ndarray) -> float:
        """R@10 + R@50 of ``scores`` (pessimistic ties), the context masked under dedup."""
        scores = scores.copy()
        scores[self.mask] = -np.inf
        own = scores[self.inverse, self.targets]
        ranks = (scores[self.inverse] >= own[:, None]).sum(axis=1)
        return float(np.mean(ranks <= 10) + np.mean(ranks <= 50))

    def tune(self, names: Sequence[str], start: Mapping[str, float], rounds: int = 3,
             grid: Sequence[float] = GRID) -> dict[str, float]:
        """Weights of ``names`` (the others of ``start`` kept fixed), from ``start``: each
        round tries every grid value of every name in turn and keeps any improvement."""
        weights = {n: 0.0 for n in names} | dict(start)
        current = np.zeros(self.shape, np.float32)
        for n, w in weights.items():
            current += np.float32(w) * self.features[n]
        best = self.objective(current)
        for _ in range(rounds):
            changed = False
            for n in names:
                for g in grid:
                    trial = current + np.float32(g - weights[n]) * self.features[n]
                    value = self.objective(trial)
                    if value > best + 1e-9:
                        best, current, weights[n], changed = value, trial, g, True
            if not changed:
                break
        return {n: w for n, w in weights.items() if w}
