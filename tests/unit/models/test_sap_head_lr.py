"""sap.head_lr_mult, our option beside the code (docs/METHODS.md D1): SAP's mask head (side
branches and fuse) in its own optimiser group at train.lr x the multiplier; 1 (the default) leaves
the code's groups as they were. Real FineParser models and Adam; a generated Mixed_4f whose
foreground cells carry a channel pattern, and the masks of those cells."""

from __future__ import annotations

import copy

import pytest
import torch

from aqa.models.fineparser_losses import mask_loss
from aqa.models.registry import build_model
from aqa.models.sap import SAP, SAPConfig, SAPError
from aqa.train.loop import make_optimizer

SMALL = {"psnet": {"head_hidden": [8]}, "decoder": {"dim": 64, "heads": 2, "depth": 1}, "regressor_hidden": [8]}
TRAIN = {"lr": 1e-3, "lr_backbone": 1e-4, "weight_decay": 0.0}


def _model(mult: float | None, **sap):
    if mult is not None:
        sap["head_lr_mult"] = mult
    return build_model("fineparser", **SMALL, **({"sap": sap} if sap else {}))


@pytest.mark.parametrize("fuse", [False, True])
def test_the_head_gets_its_own_group_at_the_multiplied_lr(fuse):
    model = _model(10.0, fuse_t2=fuse)
    opt = make_optimizer(model, TRAIN)
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["sap", "psnet", "sve", "finereg", "sap_head"]
    assert groups["sap_head"]["lr"] == pytest.approx(1e-2) and groups["sap"]["lr"] == 1e-3
    head = {id(p) for p in [*model.sap.side.parameters(), *(model.sap.fuse.parameters() if fuse else ())]}
    assert {id(p) for p in groups["sap_head"]["params"]} == head
    assert id(model.sap.side["4"].score_dsn.bias) in head and (not fuse or id(model.sap.fuse.weight) in head)
    trunk = {id(p) for p in groups["sap"]["params"]}
    assert not trunk & head and id(model.sap.mixed_5c.branch_0.conv3d.weight) in trunk
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters() if p.requires_grad}


def test_multiplier_one_keeps_the_codes_groups():
    default, one = make_optimizer(_model(None), TRAIN), make_optimizer(_model(1.0), TRAIN)
    for opt in (default, one):
        assert [g["name"] for g in opt.param_groups] == ["sap", "psnet", "sve", "finereg"]
        assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    assert [len(g["params"]) for g in default.param_groups] == [len(g["params"]) for g in one.param_groups]


@pytest.mark.parametrize("bad", [0, -1.0, "10", True])
def test_a_multiplier_that_cannot_work_is_one_line(bad):
    with pytest.raises(SAPError, match=r"sap.head_lr_mult must be a number > 0") as err:
        SAP(SAPConfig(head_lr_mult=bad))
    assert "\n" not in str(err.value)


def _generated(seed: int = 0):
    """Mixed_4f-like maps (N, 832, 4, 7, 7) >= 0 whose foreground cells (rows 2-4, column 3) add 1
    to channels 0-99, and each snippet's mask (N, 16, 112, 112): those cells' 16 x 16 pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 832, 4, 7, 7, generator=g)
    x[:, :100, :, 2:5, 3] += 1.0
    target = torch.zeros(6, 16, 112, 112, dtype=torch.bool)
    target[:, :, 32:80, 48:64] = True
    return x, target


def _gap_after(mult: float | None, steps: int) -> tuple[float, float]:
    """(foreground - background mean logit, focal loss) of the T2 head after `steps` Adam steps of
    the model's optimiser on the generated masks."""
    torch.manual_seed(0)
    model = _model(mult)
    opt = make_optimizer(model, TRAIN)
    x, target = _generated()
    head = model.sap.side["4"]
    for _ in range(steps):
        logits, _ = head(x)
        loss = mask_loss([logits], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = head(x)[0][:, 0]
        return float(logits[target].mean() - logits[~target].mean()), float(mask_loss([logits[:, None]], target))


def test_the_multiplied_head_separates_foreground_faster():
    # at the code's lr the head first lowers every logit through the non-negative maps, the
    # foreground's larger ones most (a negative gap, as on the stand-in's Mixed_4f); x10 separates
    gap1, loss1 = _gap_after(None, 20)
    gap10, loss10 = _gap_after(10.0, 20)
    assert gap1 < 0.5 and gap10 > 1.5, (gap1, gap10)
    assert loss10 < 0.5 * loss1, (loss1, loss10)


def test_params_check_the_multiplier(repo_params):
    from aqa.params import ParamsError, validate_params, variant_errors

    p = copy.deepcopy(repo_params)
    p["train"]["variants"]["fineparser"]["sap"] = {"head_lr_mult": 10}
    validate_params(p, "params.yaml")
    assert variant_errors(p) == []
    for bad in (0, -2, "x"):
        p["train"]["variants"]["fineparser"]["sap"] = {"head_lr_mult": bad}
        with pytest.raises(ParamsError, match="head_lr_mult") as err:
            validate_params(p, "params.yaml")
        assert "\n" not in str(err.value)
        assert variant_errors(p) == [f"train.variants.fineparser.sap.head_lr_mult: must be a number > 0, got {bad!r}"]
    p["train"]["variants"]["fineparser"]["sap"] = {"head_lr_mul": 10}
    assert variant_errors(p) == ["train.variants.fineparser.sap: unknown settings ['head_lr_mul']"]
