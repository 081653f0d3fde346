"""Command line: ``fastclip <command>`` or ``python -m fastclip <command>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    import fastclip

    fastclip.show_config(as_json=args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastclip", description="fastclip: fast, stable training kernels for NumPy."
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    info = sub.add_parser("info", help="show the build and run-time configuration")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)
    from fastclip import demo

    demo_p = sub.add_parser("demo", help="train a deep MLP three ways and compare (start here)",
                            description=demo.DESCRIPTION)
    demo.add_arguments(demo_p)
    demo_p.set_defaults(func=demo.run_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
