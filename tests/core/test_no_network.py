"""Nothing in the package reaches for the network: no network client is imported, and a
run with every connection refused still works."""
from __future__ import annotations

import re
from pathlib import Path

from helpers import png, predict

from napari_rarepheno.cli import main

_NETWORK = re.compile(r"^\s*(import|from)\s+(urllib|http\.client|requests|httpx|socket|ftplib|aiohttp|pooch|"
                      r"huggingface_hub)\b|torch\.hub|urlopen\(", re.M)


def test_no_network_access_anywhere(tmp_path, models, monkeypatch):
    """Statically: no module of the package imports a network client. At run time: a
    predict run with every socket connection refused still works."""
    import socket

    import napari_rarepheno

    pkg = Path(napari_rarepheno.__file__).parent
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if _NETWORK.search(p.read_text("utf-8"))]
    assert offenders == []

    def no_network(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    png(tmp_path / "in" / "a.png")
    assert main(predict(tmp_path, models["wscnn"])) == 0
