"""The ``fastkm`` command (also ``python -m fastkm``).

Subcommands:

* ``fastkm info``: version, OpenMP, threads and instruction-set level (``show_config``).

Errors are reported as one line on stderr with a non-zero exit status.
"""

import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastkm", description="Exact k-means clustering and colour quantization.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="show the version, OpenMP, threads and instruction set")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._config import show_config

        show_config()
        return 0
    parser.print_help(sys.stderr)
    return 2
