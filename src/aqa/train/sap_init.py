"""FineParser's SAP starts from the Kinetics I3D (FINEPARSER.md 2.3; docs/TRAINING.md): the
trunk SAP trains (at tier T2 MaxPool5a + Mixed_5b/5c) is overwritten by the weights fetch_i3d
imported, verified against its manifest, before the first epoch. A resumed training and the
evaluate stage get the weights back from the checkpoint (the model refuses to run otherwise:
`SAP.check_initialised`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from aqa.errors import AqaError

log = logging.getLogger(__name__)


class SAPWeightsError(AqaError):
    """A model with a SAP asked to train without the Kinetics I3D weights."""


def needs_kinetics(model: torch.nn.Module) -> bool:
    """True for a model whose SAP trunk must start from the Kinetics weights (FineParser with SAP)."""
    sap = getattr(model, "sap", None)
    return sap is not None and callable(getattr(sap, "init_from_kinetics", None))


def init_sap(model: torch.nn.Module, weights_path: str | Path | None, what: str) -> str:
    """Load the verified Kinetics I3D at `weights_path` into `model.sap`'s trunk; return its sha256."""
    from aqa.models.i3d_weights import load_verified_weights

    if weights_path is None:
        raise SAPWeightsError(f"{what}: SAP's I3D trunk starts from the Kinetics weights; give them "
                              "(aqa train --weights data/external/i3d/kinetics400_rgb.pt)")
    state, digest = load_verified_weights(weights_path)
    model.sap.init_from_kinetics(state)
    log.info("%s: SAP trunk initialised from %s (sha256 %s...)", what, weights_path, digest[:12])
    return digest
