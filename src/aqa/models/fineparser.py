"""FineParser (Xu et al., CVPR 2024) as a pairwise model: SAP + TAP + SVE + FineReg
(../shared/docs/FINEPARSER.md 2-3, 8.1; decisions in docs/METHODS.md "FineParser").

Batch keys (first dim B, docs/CONTRACTS.md plus FineParser's cache additions):
  pooled (B, 9, 1024)         TAP's frozen I3D features f (the feature cache)
  mixed4f (B, 9, 832, 4, 7, 7) SAP T2's input (the same I3D pass); frames (B, 3, 96, H, W) uint8 at T0/T1
  sve (B, 96, 512)            the SVE backbone's per-frame features (aqa.models.sve_backbone)
  masks (B, 96, 112, 112)     the protocol masks, bool (or float, >= 0.5 foreground; training loss only)
  score (B,), transitions (B, 2) on the loader's scale (boundaries b = t + 1)

Forward of one pair, as the code (helper:35-198):
  1. SAP over query and exemplar snippets together: m (B, 9, 1024), mask logits per snippet;
  2. the gate u = f * sigmoid(m);
  3. PSNet on u, query and exemplar in separate calls (its BatchNorm per half); boundaries =
     the argmax per column; PSNet trains on the BCE only (its output is used through argmax);
  4. SVE stream: each video's per-frame features cut at its own boundaries with +-5 frames,
     resampled to 36 / 60 / 48 frames, projected per step to (d, 64) tokens;
  5. I3D stream: u cut on the snippet axis at the pair-averaged boundaries (i3d_cut), 4 snippets
     per step, C_channel per step -> (12, 64) tokens;
  6. FineReg: per-step cross-attention decoders, ScoreMLP per token, token means, step weights
     3/5/2 (normalised), the mean of the two streams -> delta; both directions.
Training cuts at ground truth (train_cuts "gt", the code: prob_tas_threshold 1.0); evaluation at
the predicted boundaries.

encode (per dive): u, the boundaries of each cut mode, seg, pred_transitions and the SVE tokens
(they depend only on the dive's own cut). compare: the pair-mean I3D cut, C_channel x 3, the
decoders and the regressors. So voting encodes each dive once.

Ablations (Table 3 A-E, Table 4, Table 5) are settings of this one model:
`aqa.models.fineparser_ablations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aqa.models.decoder import DecoderConfig
from aqa.models.fineparser_cuts import (
    I3D_CUTS, SVE_LENGTHS, i3d_windows, resample_windows, snippet_cuts, sve_windows, uniform_boundaries,
)
from aqa.models.fineparser_losses import binary_target, mask_loss
from aqa.models.finereg import STREAMS, CChannel, FineReg, FineRegConfig, SVEProjection
from aqa.models.psnet import PSNet, PSNetConfig, predicted_boundaries
from aqa.models.sap import SAP, SAPConfig, frames_to_snippets, pack_snippets, snippets_to_frames
from aqa.models.sve_backbone import BACKBONES
from aqa.models.tsa import Encoding, PairwiseModel, TRANSITION_MODES

TRAIN_CUTS = ("gt", "pred")


@dataclass
class FineParserConfig:
    # the row of Tables 3-5 this config is (aqa.models.fineparser_ablations; registry.make_config
    # applies its settings under the explicit ones); recorded, not read by the model
    ablation: str = "table3_E"
    sap: SAPConfig = field(default_factory=SAPConfig)
    psnet: PSNetConfig = field(default_factory=PSNetConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    # modules (Table 3): SAP's gate and mask loss; TAP's cuts (else uniform thirds); the streams
    use_sap: bool = True
    use_tap: bool = True
    streams: tuple[str, ...] = STREAMS
    # SVE (Tables 4 and 5)
    sve_tokens: int = 4             # "step duration": tokens per step of the SVE projection
    sve_backbone: str = "i3d2d"     # which cached per-frame features (aqa.models.sve_backbone)
    sve_dim: int = 512
    i3d_tokens: int = 4             # snippets per step of the I3D stream (hard coded 4)
    # code-vs-paper switches (D2), code by default
    lambda_norm: bool = True
    stream_mean: bool = True
    decoder_sharing: str = "reference"
    i3d_cut: str = "pair_mean"
    train_cuts: str = "gt"
    focal_alpha: float | None = None
    focal_gamma: float = 2.0
    # SAP's focal loss on the masks; false on a dataset without masks (MTL-AQA: set from
    # aqa.data.datasets' `masks` by aqa.train.run.model_kwargs), where SAP trains through the gate alone
    mask_loss: bool = True
    step_weights: tuple[float, ...] = (3.0, 5.0, 2.0)
    regressor_hidden: tuple[int, ...] = (256, 64)
    # the protocol's snippets; frames normalisation (T0/T1 SAP from frames)
    snippet_starts: tuple[int, ...] = (0, 10, 20, 30, 40, 50, 60, 70, 80)
    snippet_length: int = 16
    num_frames: int = 96
    normalization: str = "imagenet"


def _check(cfg: FineParserConfig) -> None:
    if not cfg.streams or set(cfg.streams) - set(STREAMS):
        raise ValueError(f"fineparser streams must be a non-empty subset of {STREAMS}, got {cfg.streams}")
    if cfg.i3d_cut not in I3D_CUTS:
        raise ValueError(f"i3d_cut must be one of {I3D_CUTS}, got {cfg.i3d_cut!r}")
    if cfg.train_cuts not in TRAIN_CUTS:
        raise ValueError(f"train_cuts must be one of {TRAIN_CUTS}, got {cfg.train_cuts!r}")
    if cfg.sve_backbone not in BACKBONES:
        raise ValueError(f"sve_backbone must be one of {BACKBONES}, got {cfg.sve_backbone!r}")
    if cfg.sve_dim // 8 != cfg.decoder.dim or cfg.psnet.feature_dim // 16 != cfg.decoder.dim:
        raise ValueError(f"sve_dim / 8 ({cfg.sve_dim // 8}) and the I3D stream's 64 must equal the "
                         f"decoder dim {cfg.decoder.dim}")
    if len(cfg.snippet_starts) != cfg.psnet.in_channels:
        raise ValueError(f"{len(cfg.snippet_starts)} snippets but PSNet reads {cfg.psnet.in_channels}")


class FineParserModel(PairwiseModel):
    @property
    def cache_keys(self) -> tuple[str, ...]:
        """The feature cache's additions its batches need (aqa.train.data.load_dive_data's
        `cache_keys`): mixed4f (SAP at T2) and masks (SAP's loss) with SAP, sve with the SVE stream."""
        keys = []
        if self.cfg.use_sap and self.cfg.sap.tier == "T2":
            keys.append("mixed4f")
        if "sve" in self.cfg.streams:
            keys.append("sve")
        if self.cfg.use_sap and self.cfg.mask_loss:   # a dataset without masks (mask_loss false) needs none
            keys.append("masks")
        return tuple(keys)

    def __init__(self, cfg: FineParserConfig = FineParserConfig()):
        super().__init__()
        _check(cfg)
        self.cfg = cfg
        self.sap = SAP(cfg.sap) if cfg.use_sap else None
        self.psnet = PSNet(cfg.psnet) if cfg.use_tap else None
        streams = tuple(s for s in STREAMS if s in cfg.streams)
        if "sve" in streams:
            self.sve_proj = nn.ModuleList(SVEProjection(c, cfg.sve_tokens) for c in SVE_LENGTHS)
        if "i3d" in streams:
            self.c_channel = nn.ModuleList(CChannel(cfg.i3d_tokens, cfg.psnet.feature_dim) for _ in range(3))
        self.finereg = FineReg(FineRegConfig(
            decoder=cfg.decoder, regressor_hidden=cfg.regressor_hidden, step_weights=cfg.step_weights,
            lambda_norm=cfg.lambda_norm, stream_mean=cfg.stream_mean,
            decoder_sharing=cfg.decoder_sharing), streams)

    def lr_groups(self) -> dict[str, list[nn.Parameter]]:
        """The optimiser groups of FINEPARSER.md 4.1 (each at params train.lr, 1e-3 as the code's
        base lr), over the trainable parameters: SAP (its trunk top and side branches), PSNet
        (TAP's S), the SVE projections, and FineReg with C_channel. TAP's I3D (`backbone`, only
        with train.backbone finetune) is not here: aqa.train.loop.make_optimizer gives it
        lr_backbone (1e-4, the code's 1e-3 x 0.1)."""
        parts = {"sap": [self.sap], "psnet": [self.psnet],
                 "sve": [getattr(self, "sve_proj", None)],
                 "finereg": [self.finereg, getattr(self, "c_channel", None)]}
        out = {}
        for name, modules in parts.items():
            params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
            if params:
                out[name] = params
        if self.sap is not None and self.cfg.sap.head_lr_mult != 1:   # our option: the head apart
            head = {id(p) for p in self.sap.head_parameters()}
            out["sap"] = [p for p in out["sap"] if id(p) not in head]
            out["sap_head"] = [p for p in self.sap.head_parameters() if p.requires_grad]
        return out

    def lr_scales(self) -> dict[str, float]:
        """Multipliers of train.lr per `lr_groups` name (the groups not named here: 1)."""
        return {"sap_head": float(self.cfg.sap.head_lr_mult)} if self.sap is not None else {}

    # ------------------------------------------------------------------ SAP

    def sap_pass(self, batch: dict, masks: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(m (B, S, 1024), mask logits [(B, S, 1, L, H, W), ...]) of a batch's snippets; masks
        False: no mask logits (an empty list), m the same."""
        self.sap.check_initialised()
        if self.sap.from_frames:
            from aqa.features.transforms import normalize

            clips = pack_snippets(batch["frames"], self.cfg.snippet_starts, self.cfg.snippet_length)
            x = normalize(clips.flatten(0, 1), self.cfg.normalization)   # (B*S, 3, L, H, W)
            b = clips.shape[0]
        else:
            maps = batch["mixed4f"]                                      # (B, S, 832, 4, 7, 7)
            b = maps.shape[0]
            x = maps.flatten(0, 1).float()
        m, outs = self.sap(x, masks)
        s = x.shape[0] // b
        return m.view(b, s, -1), [o.view(b, s, *o.shape[1:]) for o in outs]

    @torch.no_grad()
    def predict_masks(self, batch: dict) -> torch.Tensor:
        """Per-frame foreground probabilities (B, 96, H, W): sigmoid of the last output (the
        fused one, or tap 4's side output at T2), frames in two snippets averaged."""
        if self.sap is None:
            raise ValueError("this FineParser variant has no SAP (use_sap false): no masks")
        _, outs = self.sap_pass(batch)
        logits = outs[-1][:, :, 0]                                        # (B, S, L, H, W)
        return torch.sigmoid(snippets_to_frames(logits, self.cfg.snippet_starts, self.cfg.num_frames))

    def _wants_masks(self) -> bool:
        """Only training's mask loss reads the mask logits of a forward / encode."""
        return self.training and self.cfg.mask_loss

    # ------------------------------------------------------------------ encode / compare

    def encode_modes(self, batch: dict, modes: tuple[str, ...], sap_out=None) -> dict[str, Encoding]:
        self._check_modes(modes)
        f, _ = self.backbone(batch)                                       # (B, 9, 1024)
        masks = []
        if self.sap is not None:
            m, masks = sap_out if sap_out is not None else self.sap_pass(batch, self._wants_masks())
            u = f * torch.sigmoid(m)                                      # the gate
        else:
            u = f
        b = f.shape[0]
        shared: Encoding = {"u": u}
        if self.psnet is not None:
            _, seg = self.psnet(u)                                        # (B, 96, 2)
            pred = predicted_boundaries(seg)                              # (B, 2)
            shared.update(seg=seg, pred_transitions=pred - 1)
        else:
            pred = uniform_boundaries(b, self.cfg.num_frames, f.device)   # no TAP: equal thirds
        if self.training and self.cfg.mask_loss:
            shared.update({f"mask{i}": o for i, o in enumerate(masks)})
        out = {}
        for mode in modes:
            if mode == "gt" and self.psnet is not None:
                bounds = batch["transitions"].to(f.device).long() + 1
            else:
                bounds = pred
            enc = {**shared, "bounds": bounds}
            if "sve" in self.finereg.streams:
                enc["sve_tokens"] = self._sve_tokens(batch, bounds)
            out[mode] = enc
        return out

    def _sve_tokens(self, batch: dict, bounds: torch.Tensor) -> torch.Tensor:
        feats = batch["sve"].float()                                      # (B, 96, 512)
        if feats.shape[-1] != self.cfg.sve_dim:
            raise ValueError(f"batch['sve'] has {feats.shape[-1]} dims, the model expects {self.cfg.sve_dim}")
        starts, ends = sve_windows(bounds, feats.shape[1])
        parts = resample_windows(feats, starts, ends, SVE_LENGTHS)        # (B, 36|60|48, 512)
        return torch.stack([proj(p) for proj, p in zip(self.sve_proj, parts)], 1)  # (B, 3, d, 64)

    def _i3d_tokens(self, u: torch.Tensor, b_self: torch.Tensor, b_other: torch.Tensor) -> torch.Tensor:
        s = snippet_cuts(b_self, b_other, self.cfg.i3d_cut)               # (B, 2) on the snippet axis
        starts, ends = i3d_windows(s, u.shape[1])
        parts = resample_windows(u, starts, ends, (self.cfg.i3d_tokens,) * 3)  # 3 x (B, 4, 1024)
        return torch.stack([proj(p) for proj, p in zip(self.c_channel, parts)], 1)  # (B, 3, 12, 64)

    def compare(self, enc_q: Encoding, enc_e: Encoding, *, reverse: bool = True) -> dict[str, torch.Tensor]:
        tokens = {}
        if "i3d" in self.finereg.streams:
            bq, be = enc_q["bounds"], enc_e["bounds"]
            tokens["i3d"] = (self._i3d_tokens(enc_q["u"], bq, be), self._i3d_tokens(enc_e["u"], be, bq))
        if "sve" in self.finereg.streams:
            tokens["sve"] = (enc_q["sve_tokens"], enc_e["sve_tokens"])
        delta = self.finereg(tokens, reverse)                             # (B or 2B,)
        b = enc_q["u"].shape[0]
        out = {"delta": delta[:b]}
        if reverse:
            out["delta_rev"] = delta[b:]
        if "seg" in enc_q:
            out.update(seg_query=enc_q["seg"], seg_exemplar=enc_e["seg"],
                       pred_transitions=enc_q["pred_transitions"],
                       pred_transitions_exemplar=enc_e["pred_transitions"])
        for k in enc_q:
            if k.startswith("mask"):
                out[f"{k}_query"], out[f"{k}_exemplar"] = enc_q[k], enc_e[k]
        return out

    def forward(self, query: dict, exemplar: dict, transitions: str = "pred") -> dict[str, torch.Tensor]:
        """SAP over both videos' snippets as one batch (the code's pack); PSNet, SVE and C_channel
        per video (their BatchNorm per half, as the code). Training cuts at ground truth unless
        train_cuts is 'pred' (then the host's prob_tas_threshold decides `transitions`)."""
        if transitions not in TRANSITION_MODES:
            raise ValueError(f"transitions must be one of {TRANSITION_MODES}, got {transitions!r}")
        if self.training and self.cfg.train_cuts == "gt":
            transitions = "gt"
        b = query["score"].shape[0]
        sap_q = sap_e = None
        if self.sap is not None:
            key = "frames" if self.sap.from_frames else "mixed4f"
            m, outs = self.sap_pass({key: torch.cat([query[key], exemplar[key]])}, self._wants_masks())
            sap_q = (m[:b], [o[:b] for o in outs])
            sap_e = (m[b:], [o[b:] for o in outs])
        enc_q = self.encode_modes(query, (transitions,), sap_q)[transitions]
        enc_e = self.encode_modes(exemplar, (transitions,), sap_e)[transitions]
        return self.compare(enc_q, enc_e)

    # ------------------------------------------------------------------ loss

    def loss(self, out: dict[str, torch.Tensor], query: dict, exemplar: dict
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """L = MSE both ways + BCE on the transitions (TAP) + the focal mask loss summed over SAP's
        outputs (when the outputs are there: training mode), all weights 1 (eq. 7, the code)."""
        total, parts = super().loss(out, query, exemplar)
        keys = sorted(k[:-len("_query")] for k in out if k.startswith("mask") and k.endswith("_query"))
        if keys:
            starts, length = self.cfg.snippet_starts, self.cfg.snippet_length
            target = torch.cat([frames_to_snippets(binary_target(query["masks"]), starts, length),
                                frames_to_snippets(binary_target(exemplar["masks"]), starts, length)])  # (2B, S, L, H, W) bool
            outputs = [torch.cat([out[f"{k}_query"], out[f"{k}_exemplar"]]) for k in keys]
            focal = mask_loss(outputs, target.to(outputs[0].device), gamma=self.cfg.focal_gamma,
                              alpha=self.cfg.focal_alpha)
            total = total + focal
            parts["focal_mask"] = float(focal.detach())
        return total, parts
