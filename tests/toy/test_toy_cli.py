"""The ``toy`` command group: wiring into the main parser and the missing-extras message."""

from __future__ import annotations

import argparse
import sys

import pytest

from mi_catalog.cli import build_parser
from mi_catalog.errors import CliError
from mi_catalog.toy import cli as toy_cli


def test_toy_commands_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["toy", "train", "--steps", "7", "--seed", "3", "--out", "x"])
    assert (args.func, args.steps, args.seed, args.out) == (toy_cli.run_train, 7, 3, "x")
    args = parser.parse_args(["toy", "eval", "--format", "json"])
    assert (args.func, args.format, args.model) == (toy_cli.run_eval, "json", None)


def test_missing_run_extras_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(CliError, match=r"pip install 'mi-catalog\[run\]'") as raised:
        toy_cli.run_eval(argparse.Namespace(model=None, format="table"))
    assert raised.value.code == 2
