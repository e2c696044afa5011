"""Bandit policies in the closed-loop simulator, beside Vowpal Wabbit, and the feedback loop.

    .venv/bin/python benchmarks/bandits.py [--quick] [--rounds 3000]

The world (tastemaker.eval.simulate): ml-latest-small (bundled), truth = ALS(32) on all
interactions, the agent's view = ALS(32) on a seeded half of them; 300 simulated users; per
round the agent's top 50 unconsumed items plus 10 random ones among its top 500; slates of
k = 10; a position-weighted multinomial logit with a no-click option (examination (1+p)^-1),
calibrated so the agent's own top-10 is clicked 15% of the time; novelty-seeking users
(θ_u ~ Beta(2, 2), explore/exploit sessions) with an attractiveness bonus for categories they
have not consumed.

1. **Policies**, one seed, common random numbers (every policy meets the same users in the
   same order with the same click draws): greedy (the offline ranking, no learning), random,
   epsilon-greedy, UCB1, Beta TS, in-slate TS, per-position TS, LinUCB, Diag-LinUCB, linear TS,
   and Vowpal Wabbit's ``--cb_explore_adf`` (epsilon-greedy over a linear cost model with
   user x item quadratic features, ``-q UA``), filling the slate one position at a time
   among the arms not yet placed (as VW's own conditional contextual bandit does). Reward and
   regret per round, the paired difference against random and against LinUCB.
2. **Novelty intent**: Diag-LinUCB with exploration scaled per decision by the intent read
   off the user's history (tastemaker.online.novelty: static + session share of first-time
   categories; the scale 0.25 + 1.5 g) against the same policy without it, and the
   correlation of the inferred static propensity with the simulated users' true θ_u.
   The Beta policies come classic (uniform prior) and as the offline hybrid (``prior_strength``:
   the agent's score, calibrated to clicks per impression, as 20 pseudo-impressions).
3. **Throughput**: select + update decisions per second on one core (60 arms, d = 32), and
   the cost of one update as d grows (LinUCB O(d²), Diag-LinUCB O(d)).
4. **Feedback loop**: 20 periods of serve-and-retrain of an ALS + popularity pipeline, with
   and without the popularity-correction reranker (smooth xQuAD, weight 0.5): reward, Gini of
   impressions and catalog coverage per period.

Writes benchmarks/results/bandits.json, bandits.png (cumulative reward and regret per
policy), bandits-loop.png (the feedback loop per period) and the "bandits" section of
RESULTS.md. ``--quick`` runs a short version and writes bandits-quick.* only.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import RESULTS_DIR, machine, table, update_section, write_json  # noqa: E402

from tastemaker.data.loaders.movielens import load_movielens_latest_small  # noqa: E402
from tastemaker.eval.simulate import SimulatorConfig, World, paired_difference, plot, run_pipeline, run_policy  # noqa: E402
from tastemaker.online import (  # noqa: E402
    UCB1,
    Arms,
    BetaThompson,
    DiagLinUCB,
    EpsilonGreedy,
    Feedback,
    LinearThompson,
    LinUCB,
    Policy,
    PositionThompson,
    RandomPolicy,
    Selection,
    SlateThompson,
)
from tastemaker.online.novelty import novelty_intent, novelty_propensities  # noqa: E402
from tastemaker.pipeline.context import Context  # noqa: E402

K = 10
DRAWS = 50  # Monte-Carlo propensity draws per decision (the service's default is 200)
PRIOR = 20.0  # Beta policies' prior_strength in the hybrid rows (pseudo-impressions at the agent's score)
#: the linear policies: the prior (the agent's item vector, scaled to its calibrated score)
#: weighs 1000 pseudo-observations; one item's click rate is ~1.5% here, so a weaker prior
#: (reg 1: one impression without a click cuts an arm's estimate by 60%) ranks every arm
#: already shown below the unseen ones (the "reg 1" row)
LINEAR: dict[str, Any] = {"alpha": 0.05, "reg": 1000.0, "prior_scale": "auto"}


class Greedy(Policy):
    """The offline ranking as it is: the agent's prior, no learning (the baseline to beat)."""

    name = "greedy"
    deterministic = True

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(arms.prior, dtype=np.float64)


class VowpalWabbitSlate:
    """VW's ``--cb_explore_adf`` filling a slate position by position (see the module doc)."""

    name = "vw cb_explore_adf"

    def __init__(self, epsilon: float = 0.1, seed: int = 0) -> None:
        import vowpalwabbit

        self.vw = vowpalwabbit.Workspace(f"--cb_explore_adf --epsilon {epsilon} -q UA --quiet --random_seed {seed}")
        self.rng = np.random.default_rng(seed)
        self._last: list[tuple[list[str], int, float]] = []

    @staticmethod
    def _features(prefix: str, vector: np.ndarray) -> str:
        return " ".join(f"{prefix}{j}:{v:.5f}" for j, v in enumerate(vector) if v != 0)

    def select(self, context: np.ndarray | None, arms: Arms, k: int, **_: Any) -> Selection:
        assert context is not None and arms.features is not None
        shared = "shared |U " + self._features("u", context)
        lines = [f"|A {self._features('a', row)}" for row in arms.features]
        left = list(range(len(arms)))
        rows, props, self._last = [], [], []
        for _ in range(min(k, len(arms))):
            example = [shared] + [lines[i] for i in left]
            pmf = np.asarray(self.vw.predict(example), dtype=np.float64)
            pmf = pmf / pmf.sum()
            pick = int(self.rng.choice(len(left), p=pmf))
            rows.append(left[pick])
            props.append(float(pmf[pick]))
            self._last.append((example, pick, float(pmf[pick])))
            left.pop(pick)
        rows_a = np.asarray(rows, dtype=np.int64)
        return Selection(rows_a, arms.ids[rows_a], np.asarray(props), self.name, 0)

    def update(self, feedback: list[Feedback]) -> None:
        for (example, pick, prob), f in zip(self._last, feedback, strict=True):
            labelled = list(example)
            labelled[1 + pick] = f"0:{-f.reward}:{prob} " + labelled[1 + pick]
            self.vw.learn(labelled)


def policies(seed: int) -> dict[str, Any]:
    return {
        "greedy (offline ranking)": Greedy(seed=seed),
        "random": RandomPolicy(seed=seed),
        "epsilon-greedy 0.1": EpsilonGreedy(seed=seed, epsilon=0.1),
        "ucb1": UCB1(seed=seed, c=0.5),
        "beta-thompson": BetaThompson(seed=seed, propensity_draws=DRAWS),
        # the offline hybrid: the agent's calibrated score as PRIOR pseudo-impressions
        f"beta-thompson, prior {PRIOR:g}": BetaThompson(seed=seed, propensity_draws=DRAWS, prior_strength=PRIOR),
        f"slate-thompson (in-slate), prior {PRIOR:g}": SlateThompson(seed=seed, propensity_draws=DRAWS, prior_strength=PRIOR),
        f"position-thompson (per position), prior {PRIOR:g}": PositionThompson(seed=seed, propensity_draws=DRAWS,
                                                                                prior_strength=PRIOR),
        "linucb": LinUCB(seed=seed, **LINEAR),
        "diag-linucb": DiagLinUCB(seed=seed, **LINEAR),
        "linear-thompson": LinearThompson(seed=seed, propensity_draws=DRAWS, **LINEAR),
        "diag-linucb, reg 1 (a weak prior)": DiagLinUCB(seed=seed, alpha=0.05, reg=1.0, prior_scale="auto"),
        "vw cb_explore_adf (epsilon 0.1)": VowpalWabbitSlate(epsilon=0.1, seed=seed),
    }


def policy_runs(world: World, rounds: int, seed: int) -> tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]]:
    results, seconds = {}, {}
    for label, policy in policies(seed).items():
        start = time.perf_counter()
        results[label] = run_policy(world, policy, rounds=rounds, k=K, seed=seed, name=label, progress=False)
        seconds[label] = time.perf_counter() - start
        print(f"  {label}: clicks/round {results[label].summary()['ctr']:.4f} ({seconds[label]:.0f} s)", flush=True)
    rows, records = [], []
    random_run, lin = results["random"], results["linucb"]
    for label, res in results.items():
        s = res.summary()
        # paired on the slate's true click probability (less noisy than the clicks themselves)
        vs_random, se_random = paired_difference(res, random_run, metric="expected", blocks=20)
        vs_lin, se_lin = paired_difference(res, lin, metric="expected", blocks=20)
        regret = s["regret"] / s["rounds"]
        rows.append([label, s["ctr"], s["expected"], regret, vs_random, se_random, vs_lin, se_lin, s["gini"],
                     s["coverage"], seconds[label]])
        records.append({"dataset": "ml-latest-small (simulated)", "model": label, "params": {"rounds": rounds, "k": K, "seed": seed},
                        "clicks_per_round": s["ctr"], "expected_reward_per_round": s["expected"], "regret_per_round": regret,
                        "minus_random": vs_random, "minus_random_se": se_random, "minus_linucb": vs_lin, "minus_linucb_se": se_lin,
                        "gini": s["gini"], "coverage": s["coverage"], "seconds": seconds[label]})
    return results, rows, records


class NoveltyDiagLinUCB(DiagLinUCB):
    """Diag-LinUCB with the explorer's novelty bonus: ``bonus`` (set per decision) is added to
    every arm's score (the bonus of BanditExplorer's ``novelty_weight``, in reward units)."""

    name = "diag-linucb"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.bonus: np.ndarray | None = None

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        scores = super()._scores(context, arms, rng)
        return scores if self.bonus is None else scores + self.bonus


NOVELTY_BONUS = 0.02  # per unit of intent, in clicks per impression (an item's click rate is ~1.5%)


def novelty_runs(world: World, rounds: int, seed: int) -> tuple[list[list[Any]], list[dict[str, Any]], dict[str, Any]]:
    """Diag-LinUCB without the novelty intent, with the intent read off the history
    (tastemaker.online.novelty, as the explorer does), and with the simulated user's true
    intent (the ceiling): the intent scales exploration (0.25 + 1.5 g) and adds
    NOVELTY_BONUS x g to candidates of categories new to the user."""
    from tastemaker.online.novelty import new_to_user

    categories = Context.from_dataset(world.dataset).categories
    inter = world.dataset.interactions.sort_values("timestamp", kind="stable")
    history = {int(u): inter.loc[inter["user"] == u, "item"].to_numpy() for u in world.users}
    runs: dict[str, Any] = {}
    inferred: list[tuple[float, float]] = []
    for label, source in (("no intent", None), ("inferred intent", "inferred"), ("true intent (ceiling)", "true")):
        policy = NoveltyDiagLinUCB(seed=seed, **LINEAR)

        def hook(arrival: Any, policy: NoveltyDiagLinUCB = policy, source: str | None = source) -> float:
            codes = np.concatenate([history[int(world.users[arrival.user])], arrival.clicked]).astype(np.int64)
            if source is None:
                policy.bonus = None
                return 1.0
            g = novelty_intent(codes, categories) if source == "inferred" else float(arrival.intent)
            if source == "inferred":
                inferred.append((g, float(arrival.intent)))
            policy.bonus = NOVELTY_BONUS * g * new_to_user(codes, arrival.candidates, categories)
            return 0.25 + 1.5 * g

        runs[label] = run_policy(world, policy, rounds=rounds, k=K, seed=seed, explore=hook, name=label, progress=False)
    rows, records = [], []
    base = runs["no intent"]
    for label, res in runs.items():
        s = res.summary()
        diff, se = paired_difference(res, base, metric="expected", blocks=20)
        rows.append([label, s["ctr"], s["expected"], s["regret"] / s["rounds"], diff, se, s["novel_click_share"]])
        records.append({"dataset": "ml-latest-small (simulated)", "model": f"diag-linucb, {label}",
                        "params": {"rounds": rounds, "k": K, "bonus": NOVELTY_BONUS},
                        "clicks_per_round": s["ctr"], "expected_reward_per_round": s["expected"],
                        "regret_per_round": s["regret"] / s["rounds"], "minus_no_intent": diff, "minus_no_intent_se": se,
                        "novel_click_share": s["novel_click_share"]})
    pairs = np.asarray(inferred)
    corr = float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) if len(pairs) > 2 else float("nan")
    static = np.array([novelty_propensities(history[int(u)], categories)[0] for u in world.users])
    corr_theta = float(np.corrcoef(static, world.theta)[0, 1])
    records.append({"dataset": "ml-latest-small (simulated)", "model": "novelty intent", "params": {},
                    "corr_inferred_vs_true_intent": corr, "corr_static_vs_true_theta": corr_theta})
    return rows, records, {"corr": corr, "corr_theta": corr_theta}


def throughput(seed: int) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    d, n = 32, 60
    rows, records = [], []
    makers = {
        "random": lambda: RandomPolicy(seed=seed), "epsilon-greedy": lambda: EpsilonGreedy(seed=seed),
        "ucb1": lambda: UCB1(seed=seed), "beta-thompson": lambda: BetaThompson(seed=seed, propensity_draws=DRAWS),
        "slate-thompson": lambda: SlateThompson(seed=seed, propensity_draws=DRAWS),
        "linucb": lambda: LinUCB(seed=seed), "diag-linucb": lambda: DiagLinUCB(seed=seed),
        "linear-thompson": lambda: LinearThompson(seed=seed, propensity_draws=DRAWS),
    }
    vectors = rng.normal(size=(2000, d)) / np.sqrt(d)
    for label, make in makers.items():
        policy = make()
        decisions = 200
        start = time.perf_counter()
        for t in range(decisions):
            pick = rng.choice(len(vectors), size=n, replace=False)
            arms = Arms.of([f"i{j}" for j in pick], vectors[pick], vectors[pick] @ vectors[t])
            x = vectors[t]
            chosen = policy.select(x, arms, K)
            policy.update([Feedback(str(a), float(rng.random() < 0.1), True, x, vectors[pick[r]], p)
                           for p, (a, r) in enumerate(zip(chosen.arm_ids, chosen.rows, strict=True))])
        rate = decisions / (time.perf_counter() - start)
        rows.append([label, rate])
        records.append({"dataset": "synthetic", "model": label, "params": {"arms": n, "k": K, "d": d, "draws": DRAWS},
                        "decisions_per_s": rate})
    for d in (16, 32, 64, 128):
        x = rng.normal(size=d)
        feedback = [Feedback(f"i{j % 50}", 1.0, True, x) for j in range(500)]
        for cls in (LinUCB, DiagLinUCB):
            policy = cls()
            start = time.perf_counter()
            policy.update(feedback)
            us = 1e6 * (time.perf_counter() - start) / len(feedback)
            rows.append([f"{cls.name} update, d={d}", 1e6 / us])
            records.append({"dataset": "synthetic", "model": cls.name, "params": {"d": d}, "update_us": us})
    return rows, records


LOOP = {
    "candidates": 100,
    "sources": [
        {"kind": "model", "name": "als", "model": "als", "params": {"embedding_size": 32, "epochs": 10, "reg": 1.0, "alpha": 5.0}},
        {"kind": "popularity"},
    ],
}


def loop_runs(world: World, periods: int, users: int, seed: int) -> tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]]:
    # smooth xQuAD keeps pulling each list towards the user's head/tail mix (binary xQuAD
    # promotes at most one item per list, which barely moves a loop)
    corrected = LOOP | {"rerankers": [{"kind": "popularity", "weight": 0.5, "variant": "smooth"}]}
    results = {
        "als + popularity": run_pipeline(world, LOOP, periods=periods, users_per_period=users, k=K, seed=seed,
                                         name="als + popularity", progress=True),
        "+ popularity correction (smooth xQuAD 0.5)": run_pipeline(world, corrected, periods=periods, users_per_period=users, k=K,
                                                            seed=seed, name="+ popularity correction", progress=True),
    }
    rows, records = [], []
    popularity = np.bincount(world.observed.interactions["item"].to_numpy(), minlength=world.n_items).astype(np.float64)
    for label, res in results.items():
        frame = res.per_period()
        # average recommended popularity (the starting data's users per shown item), per period
        frame["arp"] = [float(popularity[shown[shown >= 0]].mean()) for shown in (res.items[res.period == p] for p in frame.index)]
        for period, r in frame.iterrows():
            records.append({"dataset": "ml-latest-small (simulated)", "model": label, "params": {"period": int(period)},  # type: ignore[call-overload]
                            **{k: float(v) for k, v in r.items()}})
        gini = frame["period_gini"].to_numpy()
        slope = float(np.polyfit(np.arange(len(gini)), gini, 1)[0]) if len(gini) > 1 else float("nan")
        arp = frame["arp"].to_numpy()
        arp_slope = float(np.polyfit(np.arange(len(arp)), arp, 1)[0]) if len(arp) > 1 else float("nan")
        rows.append([label, float(frame["reward"].mean()), float(frame["expected"].mean()), float(gini[0]), float(gini[-1]), slope,
                     float(arp[0]), float(arp[-1]), arp_slope, float(frame["coverage"].iloc[-1])])
    return results, rows, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rounds = 300 if args.quick else args.rounds
    periods, per_period = (3, 50) if args.quick else (20, 150)
    suffix = "-quick" if args.quick else ""
    started = time.time()
    data = load_movielens_latest_small()
    world = World.build(data, SimulatorConfig(), seed=args.seed)
    print(f"world: {world}", flush=True)
    print("policies:", flush=True)
    results, policy_rows, records = policy_runs(world, rounds, args.seed)
    plot(results, RESULTS_DIR / f"bandits{suffix}.png", metrics=("cumulative_reward", "cumulative_regret", "gini", "coverage"),
         title=f"bandit policies on simulated ml-latest-small users ({rounds} rounds, k={K})")
    print("novelty:", flush=True)
    novelty_rows, novelty_records, corr = novelty_runs(world, rounds, args.seed)
    records += novelty_records
    print("throughput:", flush=True)
    speed_rows, speed_records = throughput(args.seed)
    records += speed_records
    print("feedback loop:", flush=True)
    loops, loop_rows, loop_records = loop_runs(world, periods, per_period, args.seed)
    records += loop_records
    plot(loops, RESULTS_DIR / f"bandits-loop{suffix}.png", metrics=("reward", "period_gini", "coverage"), by="period",
         title=f"feedback loop: {periods} periods of serve and retrain")
    write_json(f"bandits{suffix}", records)
    minutes = (time.time() - started) / 60
    body = "\n\n".join([
        "## Bandits in the closed-loop simulator (`benchmarks/bandits.py`)",
        f"Machine: {machine()}; 1 BLAS thread; {minutes:.1f} min in all. `.venv/bin/python benchmarks/bandits.py`. "
        "World and protocol: the script's docstring (ml-latest-small, truth ALS vs the agent's ALS on half the data, "
        f"300 users, 60 candidates per round, k={K}, an MNL click model with position bias and a no-click option, "
        "novelty-seeking users). One seed, common random numbers; differences are paired over 20 blocks of rounds "
        f"(± one standard error). Propensities of randomised policies from {DRAWS} draws. Plot: `benchmarks/results/bandits.png`.",
        f"**Policies** ({rounds} rounds):",
        table(["policy", "clicks/round", "expected clicks/round", "regret/round", "minus random", "SE", "minus LinUCB", "SE",
               "Gini", "coverage", "s"], policy_rows),
        f"**Novelty intent** ({rounds} rounds): Diag-LinUCB whose exploration is scaled by the user's novelty intent g "
        f"(0.25 + 1.5 g) and whose candidates from categories new to the user get {NOVELTY_BONUS} x g (clicks per "
        "impression), g read off the history as the explorer does (static + session share of first-time categories), "
        "or the simulated user's true intent (a ceiling no policy has). The simulator draws θ_u independently of the "
        f"user's real history, so the inferred intent can only follow what happens in the run: correlation of inferred "
        f"and true intent per decision {corr['corr']:.3f}, of the history's static propensity and θ_u {corr['corr_theta']:.3f}.",
        table(["intent", "clicks/round", "expected clicks/round", "regret/round", "minus no intent", "SE", "novel share of clicks"],
              novelty_rows),
        f"**Throughput** (one core, 60 arms, d = 32, k = {K}; last rows: updates per second as d grows):",
        table(["policy", "decisions/s (select + update)"], speed_rows),
        f"**Feedback loop** ({periods} periods x {per_period} users; plot `benchmarks/results/bandits-loop.png`): "
        "Gini of the period's impressions over the catalog and its slope per period (a least-squares line); ARP, the "
        "average recommended popularity (users per shown item in the starting data), and its slope; catalog coverage "
        "(items shown at least once) at the end.",
        table(["pipeline", "clicks/user", "expected clicks/user", "Gini first period", "Gini last period", "Gini slope",
               "ARP first", "ARP last", "ARP slope", "coverage"], loop_rows),
    ])
    print(body)
    if not args.quick:
        update_section("bandits", body)


if __name__ == "__main__":
    main()
