"""The ``tastemaker`` command line.

    tastemaker demo                                   train + evaluate on the bundled MovieLens
    tastemaker data info --dataset movielens-100k     what is in a dataset
    tastemaker data convert --dataset NAME --out DIR  save it as Parquet
    tastemaker train --dataset NAME --model ease --out artifacts/ease
    tastemaker evaluate --dataset NAME --models ease,itemknn --out reports/NAME
    tastemaker evaluate --dataset NAME --protocol cold-start --cold-how time   per-slice metrics
    tastemaker recommend --artifact artifacts/ease --user 1 -n 10
    tastemaker import --store sqlite:///my.db --table events.csv --columns userId=user,movieId=item
    tastemaker serve --store sqlite:///my.db --seed-table events.csv --seed-columns userId=user,movieId=item
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_DATASET = "movielens-latest-small"
_EPILOG = """
datasets: pass --dataset NAME for a public dataset (files found in --path, in
$TASTEMAKER_DATA/NAME/, in the download cache, or downloaded with --download), or
--table FILE with --columns to read your own CSV/Parquet/JSONL, or --saved DIR for a
directory written by 'tastemaker data convert'.
"""


def _add_data_args(parser: argparse.ArgumentParser, prefix: str = "", title: str = "input data") -> None:
    """The data options every command shares; ``prefix`` names them for another role
    (``serve`` takes ``--seed-dataset``, ``--seed-table`` ... for what it imports)."""
    group = parser.add_argument_group(title)

    def add(name: str, **kwargs: Any) -> None:
        group.add_argument(f"--{prefix}{name}", dest=f"{prefix}{name}".replace("-", "_"), **kwargs)

    default = "" if prefix else f" (default: {DEMO_DATASET}, bundled)"
    add("dataset", default=None, metavar="NAME", help=f"public dataset name{default}")
    add("path", default=None, help="where the dataset's files are (dir, .zip or file)")
    add("option", action="append", default=[], metavar="KEY=VALUE",
        help="loader option, e.g. subset=Beauty for amazon-s3rec-sequences (repeatable)")
    add("download", action="store_true", help="download from the publisher if not found locally")
    add("table", default=None, metavar="FILE", help="your own interactions file (.csv, .parquet, .jsonl)")
    add("columns", default=None, metavar="SRC=DST,...",
        help="column mapping for the table, e.g. userId=user,movieId=item,rating=value,timestamp=timestamp")
    add("catalog", default=None, metavar="FILE", help="your own items file for the table (item_id, title, text, categories...)")
    add("catalog-columns", default=None, metavar="SRC=DST,...", help="column mapping for the catalog, e.g. movieId=item_id")
    add("saved", default=None, metavar="DIR", help="a directory written by 'tastemaker data convert'")
    add("on-error", choices=["raise", "skip"], default="raise", help="bad rows: stop (default) or skip and report")


def _mapping(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    pairs = [pair.split("=", 1) for pair in text.split(",")]
    bad = [pair[0] for pair in pairs if len(pair) != 2]
    if bad:
        raise ValueError(f"column mapping: expected SRC=DST pairs, got {', '.join(bad)}")
    return dict(pairs)  # type: ignore[arg-type]


def _wants_data(args: argparse.Namespace, prefix: str) -> bool:
    """Whether any data source was given (with ``prefix``)."""
    get = lambda name: getattr(args, f"{prefix}{name}".replace("-", "_"))  # noqa: E731
    return bool(get("dataset") or get("table") or get("saved"))


def _load(args: argparse.Namespace, prefix: str = "") -> Any:
    from tastemaker.config import parse_params
    from tastemaker.data.dataset import load_saved_dataset

    get = lambda name: getattr(args, f"{prefix}{name}".replace("-", "_"))  # noqa: E731
    if get("saved"):
        return load_saved_dataset(get("saved"))
    if get("table"):
        from tastemaker.data.loaders.tabular import load_table

        return load_table(
            get("table"), columns=_mapping(get("columns")), catalog_path=get("catalog"),
            catalog_columns=_mapping(get("catalog-columns")), on_error=get("on-error"),
        )
    from tastemaker.data.loaders import load_dataset

    return load_dataset(
        get("dataset") or DEMO_DATASET, get("path"), on_error=get("on-error"), download=get("download"),
        **parse_params(get("option")),
    )


def _options(args: argparse.Namespace) -> Any:
    from tastemaker.types import FitOptions

    return FitOptions(seed=args.seed, threads=args.threads, progress=not args.quiet)


# ---------------------------------------------------------------------- commands
def cmd_data_info(args: argparse.Namespace) -> int:
    data = _load(args)
    inter = data.interactions
    seq_len = inter.groupby("user").size()
    print(data)
    print(f"  density            {data.n_interactions / max(data.n_users * data.n_items, 1):.6f}")
    print(f"  events per user    min {seq_len.min()}, median {seq_len.median():.0f}, max {seq_len.max()}")
    print(f"  event types        { {str(k): int(v) for k, v in inter['event_type'].value_counts().items()} }")
    print(f"  value range        {inter['value'].min():g} .. {inter['value'].max():g}")
    print(f"  timestamps         {inter['timestamp'].min()} .. {inter['timestamp'].max()}")
    titled = int((data.catalog["title"] != "").sum())
    print(f"  catalog            {len(data.catalog)} items, {titled} with titles, columns {list(data.catalog.columns)}")
    if data.user_features is not None:
        print(f"  user features      {list(data.user_features.columns)}")
    if data.social is not None:
        print(f"  social edges       {len(data.social)}")
    skipped = data.extras.get("skipped")
    if skipped:
        print(f"  skipped rows       {skipped}")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from tastemaker.data.dataset import save_dataset

    data = _load(args)
    out = save_dataset(data, args.out)
    print(f"wrote {data} to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tastemaker.config import model_class, parse_params

    if bool(args.model) == bool(args.pipeline):
        raise ValueError("train: give either --model NAME or --pipeline FILE")
    data = _load(args)
    if args.pipeline:
        from tastemaker.pipeline.config import load_pipeline_config

        model: Any = load_pipeline_config(args.pipeline)
        if args.trials:
            from tastemaker.data.splits import leave_one_out
            from tastemaker.tuning import tune_pipeline

            split = leave_one_out(data)
            model, history = tune_pipeline(model, split.train, split.validation, args.trials, _options(args), progress=not args.quiet)
            for source in {t["source"] for t in history}:
                top = max((t for t in history if t["source"] == source), key=lambda t: t["value"] if t["value"] is not None else float("-inf"))
                print(f"{source}: best of {sum(t['source'] == source for t in history)} trials {top['params']} (validation NDCG@10 {top['value']:.4f})")
    else:
        params = parse_params(args.param)
        if args.trials:
            params = _tune(args, data, params)
        model = model_class(args.model)(**params)
    start = time.perf_counter()
    model.fit(data, _options(args))
    path = model.save(args.out)
    print(f"trained {model!r} on {data} in {time.perf_counter() - start:.1f}s; artifact: {path}")
    return 0


def _tune(args: argparse.Namespace, data: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """--trials for train: search the model's space on a leave-one-out validation split of
    the data (the --param values stay fixed), print the best, and return it."""
    from tastemaker.config import model_class
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import selection_metrics
    from tastemaker.tuning import search

    cls = model_class(args.model)
    split = leave_one_out(data)
    space = {k: v for k, v in cls.search_space.items() if k not in fixed}

    def value(params: dict[str, Any]) -> float:
        return selection_metrics(cls(**params).fit(split.train, _options(args)), split.validation)[0]["ndcg@10"]

    best, history = search(value, space, args.trials, seed=args.seed, fixed=fixed, progress=not args.quiet, label=f"tuning {args.model}")
    top = max(history, key=lambda t: t["value"] if t["value"] is not None else float("-inf"))
    print(f"best of {len(history)} trials: {best} (validation NDCG@10 {top['value']:.4f})")
    return best


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tastemaker.config import CLASSICAL, DEFAULT_GRIDS, load_grids, model_class
    from tastemaker.eval.protocols import run_protocol
    from tastemaker.eval.report import markdown_table, write_report

    data = _load(args)
    if args.pipeline:
        return _evaluate_pipeline(args, data)
    grids = load_grids(args.grid) if args.grid else DEFAULT_GRIDS
    names = [n.strip() for n in args.models.split(",")] if args.models else [n for n in grids if n in CLASSICAL]
    models = {name: (model_class(name), grids.get(name, {})) for name in names}
    if args.protocol == "cold-start":
        return _evaluate_cold_start(args, data, models)
    trials = _trials(args)
    how = f"a {trials}-trial search per model" if trials else "the default grids"
    print(f"evaluating {', '.join(names)} on {data} (reference protocol: leave-one-out, full ranking; tuning: {how})")
    result = run_protocol(data, models, _options(args), progress=not args.quiet, trials=trials)
    out = Path(args.out or f"reports/{data.name}")
    json_path, md_path = write_report(result, out)
    print()
    print(markdown_table(result))
    print(f"\nreport: {md_path} and {json_path}")
    return 0


def _trials(args: argparse.Namespace) -> int:
    """The search budget: --trials, else 20 when Optuna is installed (else the grids)."""
    from tastemaker.tuning import optuna_available

    if args.trials is not None:
        if args.trials and not optuna_available():
            raise ValueError("--trials needs Optuna: pip install 'tastemaker[tune]' (or --trials 0 for the grids)")
        return int(args.trials)
    if args.grid:
        return 0  # an explicit grid file is searched as given
    if not optuna_available():
        print("(Optuna is not installed: tuning on the default grids; pip install 'tastemaker[tune]' to search)")
        return 0
    return 20


def _evaluate_pipeline(args: argparse.Namespace, data: Any) -> int:
    """The reference protocol for a pipeline file, beside each of its sources alone."""
    from tastemaker.eval.protocols import run_pipeline_protocol
    from tastemaker.eval.report import markdown_table, write_report
    from tastemaker.pipeline.config import load_pipeline_config

    pipeline = load_pipeline_config(args.pipeline)
    trials = _trials(args)
    how = f"; each model source tuned alone, {trials} trials" if trials else ""
    print(f"evaluating {pipeline.name} and each source alone on {data} (reference protocol{how})")
    result = run_pipeline_protocol(data, pipeline, _options(args), progress=not args.quiet, trials=trials)
    out = Path(args.out or f"reports/{data.name}")
    json_path, md_path = write_report(result, out)
    print()
    print(markdown_table(result))
    print(f"\nreport: {md_path} and {json_path}")
    return 0


def _evaluate_cold_start(args: argparse.Namespace, data: Any, models: dict[str, tuple[Any, dict[str, list[Any]]]]) -> int:
    """The cold-start / long-tail protocol (tastemaker.eval.slices): each model is fit once with
    the first configuration of its grid (the protocol has no validation split to tune on)."""
    import json

    from tastemaker.eval.protocols import param_grid
    from tastemaker.eval.slices import cold_start_split, evaluate_slices, slices_markdown

    split = cold_start_split(data, how=args.cold_how, quantile=args.cold_quantile, share=args.cold_share, seed=args.seed)
    print(f"evaluating {', '.join(models)} on {data} (cold-start protocol: {split})")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, (cls, grid) in models.items():
        params = (param_grid(grid) or [{}])[0]
        model = cls(**params).fit(split.train, _options(args))
        results[name] = evaluate_slices(model, split)
    out = Path(args.out or f"reports/{data.name}")
    out.mkdir(parents=True, exist_ok=True)
    table = slices_markdown(results)
    payload = {"dataset": data.name, "split": split.name, "summary": split.summary(), "results": results}
    (out / "slices.json").write_text(json.dumps(payload, indent=2))
    (out / "slices.md").write_text(f"# Cold-start evaluation: {data.name}\n\n{split!r}\n\n{table}\n")
    print()
    print(table)
    print(f"\nreport: {out / 'slices.md'} and {out / 'slices.json'}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from tastemaker.artifact import load_model
    from tastemaker.pipeline import Pipeline, is_pipeline
    from tastemaker.types import Query

    history = [h for h in (args.history or "").split(",") if h]
    query = Query(user=args.user, history=history, exclude=[e for e in (args.exclude or "").split(",") if e])
    who = f"user {args.user}" if args.user else "an anonymous session"
    if is_pipeline(args.artifact):
        pipeline = Pipeline.load(args.artifact)
        (items,) = pipeline.recommend([query], n=args.n)
        known = args.user in pipeline.users_ if args.user else False
        print(f"top {len(items)} for {who}{'' if known or not args.user else ' (unknown user)'} from the pipeline {pipeline.name}:")
        titles = pipeline.context_.titles[items.item_codes]
        for rank, (item_id, title, score, source, reason) in enumerate(
            zip(items.item_ids, titles, items.scores, items.sources, items.reasons, strict=True), 1
        ):
            print(f"{rank:3d}. {title or item_id}  [{item_id}]  score={score:.4f}  ({source}: {reason})")
        return 0
    model = load_model(args.artifact)
    (items,) = model.recommend([query], n=args.n)
    titles = model.item_titles_[items.item_codes]
    known = args.user in model.users_ if args.user else False
    print(f"top {len(items)} for {who}{'' if known or not args.user else ' (unknown user)'} from {type(model).__name__}:")
    for rank, (item_id, title, score, source) in enumerate(zip(items.item_ids, titles, items.scores, items.sources, strict=True), 1):
        print(f"{rank:3d}. {title or item_id}  [{item_id}]  score={score:.4f}{'  (' + source + ')' if source != model.name else ''}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """An interactive chat over a trained pipeline (offline: no LLM needed), one line per turn;
    an empty line, "quit" or end of input ends it."""
    from tastemaker.chat.serving import ChatService
    from tastemaker.pipeline import Pipeline, is_pipeline

    if not is_pipeline(args.artifact):
        print(f"tastemaker chat: {args.artifact} is not a pipeline artifact (train one with --pipeline, or run 'demo')",
              file=sys.stderr)
        return 2
    chat = ChatService(Pipeline.load(args.artifact), n=args.n)
    print("Tell me what you like (e.g. 'I loved Alien, any sci-fi from the 90s?'); an empty line ends the chat.", flush=True)
    while True:
        try:
            message = input("you> ").strip()
        except EOFError:
            break
        if not message or message.lower() in ("quit", "exit", "bye"):
            break
        reply = chat.turn("cli", message, args.user)
        print(f"tastemaker> {reply.answer}")
        for rank, item in enumerate(reply.items, 1):
            print(f"  {rank}. {item.title}  [{item.item_id}]  ({item.reason})")
        sys.stdout.flush()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Evaluate every classical model and the default pipeline on the bundled MovieLens, then
    train the default pipeline on all of it and show a few users' explained lists."""
    from tastemaker.config import CLASSICAL, DEFAULT_GRIDS, model_class
    from tastemaker.data.loaders import load_dataset
    from tastemaker.eval.protocols import ProtocolResult, run_pipeline_protocol, run_protocol
    from tastemaker.eval.report import markdown_table, write_report
    from tastemaker.pipeline.config import load_pipeline_config
    from tastemaker.types import Query

    data = load_dataset(DEMO_DATASET)
    print(f"Tastemaker demo: {data}\n")
    models = {name: (model_class(name), DEFAULT_GRIDS[name]) for name in CLASSICAL}
    result = run_protocol(data, models, _options(args), progress=not args.quiet)
    pipeline = load_pipeline_config("default")
    piped = run_pipeline_protocol(data, pipeline, _options(args), progress=not args.quiet, alone=False)
    result = ProtocolResult(**{**result.__dict__, "results": [*result.results, *piped.results]})
    write_report(result, args.out)
    print("\nTest set (reference protocol: temporal leave-one-out, full ranking, seen items excluded):\n")
    print(markdown_table(result))
    print(f"\nTraining the default pipeline ({pipeline.name}) on all data...")
    fitted = pipeline.clone().fit(data, _options(args))
    artifact = fitted.save(Path(args.out) / "artifact")
    users = data.users.ids[:3]
    for items, user in zip(fitted.recommend([Query(user=u) for u in users], n=5), users, strict=True):
        recent = data.titles(data.sequences()[data.users.code(user)][-3:])
        print(f"\nuser {user} recently watched: {'; '.join(recent)}")
        for rank, (title, source, reason) in enumerate(zip(data.titles(items.item_codes), items.sources, items.reasons, strict=True), 1):
            print(f"  {rank}. {title}  ({source}: {reason})")
    print(f"\nreport: {args.out}/report.md   artifact: {artifact}")
    print(f"try: tastemaker recommend --artifact {artifact} --user {users[0]} -n 10")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Load a dataset's catalog, users and events straight into a store."""
    from tastemaker.store import import_dataset, open_store

    data = _load(args)
    store = open_store(args.store)
    try:
        if store.count_events() and not args.append:
            raise ValueError(
                f"{store.location} already holds {store.count_events()} events; pass --append to add these too"
            )
        items, events = import_dataset(store, data, batch=args.batch, progress=not args.quiet)
    finally:
        store.close()
    print(f"imported {items} items and {events} events from {data} into {args.store}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service (FastAPI on uvicorn)."""
    from tastemaker.serve.settings import Settings, hash_secret

    if args.hash_key:
        print(hash_secret(args.hash_key))
        return 0
    import uvicorn

    from tastemaker.serve.app import create_app
    from tastemaker.serve.service import Service

    settings = Settings.load(args.config)
    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "store_url": args.store,
                                   "models_dir": args.models_dir}.items() if v is not None}
    if args.pipeline:
        from tastemaker.pipeline.config import load_pipeline_config

        load_pipeline_config(args.pipeline)  # a bad file fails here, naming the key
        overrides["training"] = settings.training.model_copy(update={"pipeline": args.pipeline})
    settings = settings.model_copy(update=overrides)
    if _wants_data(args, "seed_"):
        service = Service(settings, warn_if_open=False)  # the server says it once, when it starts
        try:
            if service.store.count_events() == 0:
                data = _load(args, "seed_")
                print(f"importing {data} into {settings.store_url} ...", flush=True)
                service.import_dataset(data, progress=not args.quiet)
            if service.engine.model is None:
                print(f"training the first model ({settings.training.model}) ...", flush=True)
                result = service.train()
                print(f"model {result['version']} active; holdout NDCG@10 {result['metrics'].get('ndcg@10', float('nan')):.4f}")
        finally:
            service.close()
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"\nTastemaker is serving on {base}  (OpenAPI docs: {base}/docs)\n"
        f"  curl {base}/healthz\n"
        f"  curl '{base}/v1/users/1/recommendations?n=5'\n"
        f"  curl -X POST {base}/v1/events -H 'content-type: application/json' "
        f"-d '{{\"user_id\": \"1\", \"item_id\": \"1036\", \"event_type\": \"rating\", \"value\": 5}}'\n"
        f"  curl -X POST {base}/v1/recommendations -H 'content-type: application/json' -d '{{\"items\": [\"1\", \"260\"], \"n\": 5}}'\n"
        f"  curl '{base}/v1/items/1/similar?n=5'\n",
        flush=True,
    )
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tastemaker",
        description="Tastemaker: train, evaluate and query recommenders.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        p.add_argument(
            "--threads", type=int, default=int(os.environ.get("TASTEMAKER_THREADS", "0")) or None,
            help="max BLAS/OpenMP threads (default: $TASTEMAKER_THREADS or all cores)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars or tuning log")

    demo = sub.add_parser("demo", help="train and evaluate on the bundled MovieLens and show recommendations")
    demo.add_argument("--out", default="reports/demo", help="where to write the report and artifact")
    common(demo)
    demo.set_defaults(func=cmd_demo)

    data = sub.add_parser("data", help="inspect or convert a dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    info = data_sub.add_parser("info", help="print counts, ranges and columns of a dataset", epilog=_EPILOG)
    _add_data_args(info)
    info.set_defaults(func=cmd_data_info)
    convert = data_sub.add_parser("convert", help="save a dataset as Parquet (reload with --saved DIR)", epilog=_EPILOG)
    _add_data_args(convert)
    convert.add_argument("--out", required=True, help="output directory")
    convert.set_defaults(func=cmd_data_convert)

    from tastemaker.config import MODELS

    train = sub.add_parser("train", help="fit a model and save it as an artifact", epilog=_EPILOG)
    _add_data_args(train)
    train.add_argument("--model", default=None, choices=list(MODELS), help="which model (or --pipeline)")
    train.add_argument("--pipeline", default=None, metavar="FILE",
                       help="a pipeline TOML file, or a shipped one by name (default); saves the whole pipeline")
    train.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter, e.g. reg=50 (repeatable)")
    train.add_argument("--out", required=True, help="artifact directory to write")
    train.add_argument("--trials", type=int, default=0,
                       help="search the model's space (with --pipeline: each model source's) this many trials on a validation split first (Optuna; 0 = no search)")
    common(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate", help="run the reference protocol (tune on validation, report on test)", epilog=_EPILOG
    )
    _add_data_args(evaluate)
    evaluate.add_argument(
        "--models", default=None,
        help=f"comma-separated from {','.join(MODELS)} (default: the classical ones)",
    )
    evaluate.add_argument("--grid", default=None, help="TOML file of tuning grids ([ease] reg = [50.0, 500.0])")
    evaluate.add_argument("--pipeline", default=None, metavar="FILE",
                          help="evaluate a pipeline TOML file (or a shipped one by name) and each of its sources alone")
    evaluate.add_argument("--out", default=None, help="report directory (default reports/<dataset>)")
    evaluate.add_argument("--trials", type=int, default=None,
                          help="search trials per model (Optuna TPE; default 20 when installed, 0 = the default grids)")
    evaluate.add_argument(
        "--protocol", choices=["reference", "cold-start"], default="reference",
        help="reference (leave-one-out, tuned) or cold-start (per-slice metrics: all, head, long-tail, cold items)",
    )
    evaluate.add_argument("--cold-how", choices=["time", "random"], default="time",
                          help="cold-start: items first seen after a time cut, or a random share held out")
    evaluate.add_argument("--cold-quantile", type=float, default=0.9, help="cold-start, time: the cut's quantile of event times")
    evaluate.add_argument("--cold-share", type=float, default=0.1, help="cold-start, random: share of items held out")
    common(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    serve = sub.add_parser("serve", help="run the HTTP service (needs the serve extra)")
    serve.add_argument("--config", default=None, help="settings TOML file (TASTEMAKER_* environment variables override it)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--store", default=None, help="sqlite:///path.db (default) or postgresql://...")
    serve.add_argument("--models-dir", default=None, help="where model versions are kept")
    serve.add_argument("--pipeline", default=None, metavar="FILE",
                       help="what training fits: a pipeline TOML file or a shipped one by name (default)")
    serve.add_argument("--hash-key", default=None, metavar="SECRET", help="print the sha256 to put in api_keys, and exit")
    serve.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_args(serve, "seed-", "seed data (if the store is empty: import it, then train a first model)")
    serve.set_defaults(func=cmd_serve)

    load = sub.add_parser(
        "import", help="load a dataset or your own files into a store (no server needed)", epilog=_EPILOG
    )
    load.add_argument("--store", required=True, help="sqlite:///path.db or postgresql://...")
    load.add_argument("--append", action="store_true", help="also into a store that has events (they are not deduplicated)")
    load.add_argument("--batch", type=int, default=50_000, help="events per transaction (default 50000)")
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_args(load)
    load.set_defaults(func=cmd_import)

    rec = sub.add_parser("recommend", help="top-n items for a user from a saved artifact")
    rec.add_argument("--artifact", required=True, help="artifact directory written by 'train' or 'demo'")
    rec.add_argument("--user", default=None, help="user id (omit for an anonymous session)")
    rec.add_argument("--history", default=None, help="comma-separated recent item ids to fold in")
    rec.add_argument("--exclude", default=None, help="comma-separated item ids never to show")
    rec.add_argument("-n", type=int, default=10, help="how many items (default 10)")
    rec.set_defaults(func=cmd_recommend)
    chat = sub.add_parser("chat", help="chat for recommendations over a trained pipeline (offline, in the terminal)")
    chat.add_argument("--artifact", required=True, help="a pipeline artifact directory written by 'train' or 'demo'")
    chat.add_argument("--user", default=None, help="your user id, to bring your history (optional)")
    chat.add_argument("-n", type=int, default=5, help="how many items per answer (default 5)")
    chat.set_defaults(func=cmd_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tastemaker.errors import TastemakerError

    try:
        return int(args.func(args))
    except (TastemakerError, ValueError, FileNotFoundError) as exc:
        print(f"tastemaker: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
