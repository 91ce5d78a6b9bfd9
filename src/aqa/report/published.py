"""Published numbers to print beside ours (PAPERS.md section 7), as data.

FineDiving paper (Xu et al., CVPR 2022), Tables 2-4: Spearman rho, R-l2 x 100, AIoU in %.
FineParser paper (Xu et al., CVPR 2024), Tables 1-5 (../shared/docs/FINEPARSER.md section 6, transcribed
exactly; the paper prints AIoU as fractions, stored here in % like FineDiving's). `None` = not reported.
"""

from __future__ import annotations

from typing import NamedTuple


class Published(NamedTuple):
    rho: float
    rl2_x100: float
    aiou50: float | None = None  # percent
    aiou75: float | None = None  # percent


# Table 2 and Table 3 of the FineDiving paper, by exemplar mode: "nodn" (w/o DN), "dn" (w/ DN).
FINEDIVING: dict[str, dict[str, Published]] = {
    "usdl": {"nodn": Published(0.8302, 0.5927), "dn": Published(0.8913, 0.3822)},
    "musdl": {"nodn": Published(0.8427, 0.5733), "dn": Published(0.8978, 0.3704)},
    "core": {"nodn": Published(0.8631, 0.5565), "dn": Published(0.9061, 0.3615)},
    "fr": {"nodn": Published(0.8504, 0.5837), "dn": Published(0.8576, 0.5695)},
    "fr_asym": {"nodn": Published(0.8452, 0.6022), "dn": Published(0.8563, 0.5770)},
    "fr_dn": {"nodn": Published(0.8516, 0.5736), "dn": Published(0.8721, 0.5435)},
    "fsr": {"nodn": Published(0.8602, 0.5687, 77.44, 26.36), "dn": Published(0.8793, 0.5428, 78.64, 29.37)},
    "tsa": {"nodn": Published(0.8925, 0.4782, 80.71, 30.17), "dn": Published(0.9203, 0.3420, 82.51, 34.31)},
    "tsa_dagger": {"nodn": Published(0.9029, 0.4536), "dn": Published(0.9310, 0.3260)},
}

# Table 4: TSA w/ DN with M exemplars at test.
FINEDIVING_EXEMPLARS: dict[int, Published] = {
    1: Published(0.9085, 0.4020, 76.01, 26.56),
    5: Published(0.9154, 0.3658, 80.64, 31.78),
    10: Published(0.9203, 0.3420, 82.51, 34.31),
    15: Published(0.9204, 0.3419, 82.52, 34.31),
}

class PublishedMasks(NamedTuple):
    """SAP's mask metrics as the FineParser paper prints them: MAE, F_beta, S-measure."""
    mae: float
    f_beta: float
    s_measure: float


# FineParser paper, FineDiving-HM (Table 1) and MTL-AQA (Table 2): rho, R-l2 x 100.
FINEPARSER_FINEDIVING_HM: dict[str, Published] = {
    "c3d_lstm": Published(0.6969, 1.0767),
    "c3d_avg": Published(0.8371, 0.6251),
    "mscadc": Published(0.7688, 0.9327),
    "fineparser": Published(0.9435, 0.2602, 99.46, 94.67),
    "tsa": Published(0.9324, 0.3022, 92.39, 50.07),
    "core": Published(0.9308, 0.3148),
    "musdl": Published(0.9241, 0.3474),
    "usdl": Published(0.8830, 0.4800),
    "i3d_mlp": Published(0.8776, 0.4967),
}
FINEPARSER_MASKS = {"mae": 0.0408, "f_beta": 0.1273, "s_measure": 0.8357}
FINEPARSER_MTL_AQA: dict[str, Published] = {
    "pose_dct": Published(0.2682, None),
    "c3d_svr": Published(0.7716, None),
    "c3d_lstm": Published(0.8489, None),
    "c3d_avg_stl": Published(0.8960, None),
    "c3d_avg_mtl": Published(0.9044, None),
    "tsa_net": Published(0.9422, None),
    "fineparser": Published(0.9585, 0.2411),
    "core": Published(0.9512, 0.2600),
    "musdl": Published(0.9273, 0.4510),
    "usdl": Published(0.9231, 0.4680),
}

# FineParser Table 3: module ablation (A = SAP only, B = SVE only, C = TAP only, D = SVE+TAP,
# E = SAP+SVE+TAP, the main model); None where the paper omits the metric ("unavailable").
FINEPARSER_MODULES: dict[str, tuple[Published, PublishedMasks | None]] = {
    "A": (Published(0.9313, 0.3094), None),
    "B": (Published(0.9328, 0.3097), None),
    "C": (Published(0.9334, 0.3122, 99.07, 90.39), None),
    "D": (Published(0.9351, 0.2881, 99.20, 89.32), None),
    "E": (FINEPARSER_FINEDIVING_HM["fineparser"], PublishedMasks(**FINEPARSER_MASKS)),
}
# FineParser Table 4: step duration of the SVE projection (4 = the main model).
FINEPARSER_STEP_DURATION: dict[int, tuple[Published, PublishedMasks]] = {
    2: (Published(0.9320, 0.2994, 99.87, 93.59), PublishedMasks(0.0532, 0.1010, 0.8643)),
    4: FINEPARSER_MODULES["E"],
    8: (Published(0.9337, 0.2940, 99.73, 94.93), PublishedMasks(0.0535, 0.1057, 0.8616)),
}
# FineParser Table 5: SVE backbone (rho, R-l2 x 100; ResNet-34 = the main model).
FINEPARSER_SVE_BACKBONE: dict[str, Published] = {
    "resnet18": Published(0.9363, 0.2829),
    "resnet34": Published(0.9435, 0.2602),
    "resnet50": Published(0.9362, 0.2859),
    "vit_s16": Published(0.9426, 0.2583),
}
