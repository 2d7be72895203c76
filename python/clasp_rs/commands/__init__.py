"""Subcommands of the ``clasp-rs`` console script, one module each.

Every command module exposes ``add_parser(subparsers) -> argparse.ArgumentParser`` (which
registers the subcommand and its options) and ``run(args: argparse.Namespace) -> int``
(which does the work and returns the exit status). :mod:`clasp_rs.cli` lists the modules.
"""
