"""Command line: ``pqstudy train | eval | weights``."""

from __future__ import annotations

import argparse
import json
import sys

from pqstudy.config import PROFILES, ConfigError, apply_overrides, get_profile, parse_set, validate


def _print_metrics(metrics: dict) -> None:
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, list):
            value = json.dumps(value) if len(value) <= 8 else f"[{len(value)} values]"
        print(f"  {key:28s} {value}")


def cmd_train(args) -> int:
    cfg = validate(apply_overrides(get_profile(args.profile), parse_set(args.set)))
    from pqstudy.train import train

    print(f"run {cfg.run_id} → {args.out}", file=sys.stderr)
    metrics = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    _print_metrics(metrics)
    return 0


def cmd_eval(args) -> int:
    from pqstudy.evaluate import evaluate

    metrics = evaluate(args.run_dir, split=args.split, device=args.device, progress=not args.quiet)
    _print_metrics(metrics)
    return 0


def cmd_weights(args) -> int:
    from pqstudy.metrics.weights import format_weights_report

    print(format_weights_report())
    return 0


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

    p = sub.add_parser("eval", help="re-evaluate a run directory")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("weights", help="where each metric's pretrained weights were looked for")
    p.set_defaults(func=cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"pqstudy: config error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"pqstudy {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
