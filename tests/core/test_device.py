"""precision='auto' picks bf16 by instruction set (hardware bf16 dot products), not by brand."""
from __future__ import annotations

import pytest
import torch

from napari_rarepheno.core import device


@pytest.mark.parametrize("amx, flags, capability, expected", [
    (True, set(), "AMX", True),                                      # Sapphire Rapids and later
    (False, {"avx512f", "avx512_bf16"}, "AVX512", True),             # e.g. AMD Zen 4: no AMX, AVX512-BF16
    (False, {"avx512f"}, "AVX512", False),                           # AVX-512 without bf16: emulated, slower
    (False, {"avx2", "fma"}, "AVX2", False),                         # AVX2 EPYC
])
def test_auto_precision_follows_the_instruction_set(monkeypatch, amx, flags, capability, expected):
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(device, "cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert device.cpu_native_bf16() is expected
    got = device.resolve_precision("auto", torch.device("cpu"))
    assert got == (torch.bfloat16 if expected else None)
    assert device.resolve_precision("fp32", torch.device("cpu")) is None


def test_cpu_flags_reads_this_machine():
    flags = device.cpu_flags()
    assert isinstance(flags, set)
    if flags:  # Linux
        assert any(f.startswith(("sse", "fp", "asimd", "avx")) for f in flags)
