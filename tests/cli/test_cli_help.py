"""Every command's --help prints (a stray '%' in a help text once crashed `simulate-yeast --help`)."""
from __future__ import annotations

import pytest

from napari_rarepheno.cli import build_parser, main


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        inner = [a for a in p._actions if getattr(a, "choices", None) and isinstance(a.choices, dict)]
        if inner:
            yield from ([name, n] for n in inner[0].choices)
        else:
            yield [name]


@pytest.mark.parametrize("argv", list(_commands()), ids=" ".join)
def test_help_of_every_command(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out
