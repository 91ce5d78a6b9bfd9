"""set_determinism: torch's deterministic switch on, without importing torch._dynamo unless compiling."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, torch
from aqa.train.loop import set_determinism
set_determinism(0, compiled={compiled})
dynamo = "torch._dynamo" in sys.modules
import torch._inductor.config as inductor
print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
      dynamo, inductor.deterministic)
"""


def _probe(compiled: bool) -> list[str]:
    """A fresh process (another test may have loaded torch._dynamo in this one)."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(compiled=compiled)], capture_output=True, text=True,
                         check=True, timeout=300)
    return out.stdout.split()


def test_deterministic_kernels_without_loading_dynamo():
    enabled, warn_only, dynamo, inductor = _probe(compiled=False)
    assert (enabled, warn_only) == ("True", "True")
    assert dynamo == "False"      # torch.use_deterministic_algorithms would have imported it (~1 s)
    assert inductor == "False"    # nothing compiles in this process: Inductor's flag is not read


def test_compiled_training_also_sets_inductors_flag():
    assert _probe(compiled=True) == ["True", "True", "True", "True"]
