"""The command line: ``python -m gradxform {train,compare,describe} --config FILE``.

- ``train``: train a Flax MLP on scikit-learn's 8x8 digits with the config's optimizer,
  with a progress bar, a curve plot, and Orbax checkpoints that ``--resume`` continues
  exactly.
- ``compare``: train the same model from the same seed with several optimizers, print a
  table and write one plot.
- ``describe``: print the optimizer's composition tree.

A config mistake (unknown key, wrong type, unknown optimizer, invalid value, missing file)
prints one message naming the key and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradxform", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("train", "train the digits MLP with the config's optimizer"),
        ("compare", "train the same model with several optimizers and plot them"),
        ("describe", "print the optimizer's composition tree"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", required=True, help="a YAML file, e.g. configs/default.yaml")
        if name == "describe":
            continue
        sub.add_argument("--steps", type=int, help="total steps (overrides the config's 'steps')")
        sub.add_argument("--out", help="output folder (overrides the config's 'out')")
        if name == "train":
            sub.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")
            sub.add_argument(
                "--fresh", action="store_true", help="start again, deleting the output folder's checkpoints (else they are an error)"
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a command.

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
      The exit status: 0, or 2 for a bad command line or config.

    Example:
      >>> from gradxform.__main__ import main
      >>> main(["describe", "--config", "no/such.yaml"])  # doctest: +SKIP
      2
    """
    args = _parser().parse_args(argv)
    from gradxform.config import ConfigError

    try:
        from gradxform.job import settings

        cfg = settings.load(args.config)
        if getattr(args, "steps", None) is not None and args.steps < 1:
            raise ConfigError("--steps", f"must be an integer >= 1, got {args.steps}.")
        if args.command == "describe":
            _describe(cfg)
        elif args.command == "train":
            from gradxform.job.train import train

            train(cfg, steps=args.steps, resume=args.resume, out=args.out, fresh=args.fresh)
        else:
            from gradxform.job.compare import compare

            compare(cfg, steps=args.steps, out=args.out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _describe(cfg) -> None:
    from gradxform.inspect import describe

    if cfg.optimizer is not None:
        print(describe(cfg.build()))
        return
    if cfg.optimizers is None:
        from gradxform.job.compare import DEFAULT_OPTIMIZERS
        from gradxform.job.settings import parse

        cfg = parse({"optimizers": DEFAULT_OPTIMIZERS})
    for label, tx in cfg.build_all().items():
        print(f"{label}:\n{describe(tx)}\n")


if __name__ == "__main__":
    sys.exit(main())
