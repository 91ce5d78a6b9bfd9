"""The datasets the pipeline runs: their names, release layouts and what they annotate.

Every stage runs once per dataset under the dataset's own paths (docs/CONTRACTS.md); the raw
annotations of each follow its public release exactly: FineDiving's six pickles, MTL-AQA's dive
dictionary and numbered split (the `info/` folder of yuxumin/CoRe).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aqa.errors import AqaError

FINEDIVING = "finediving"
MTL_AQA = "mtl_aqa"


@dataclass(frozen=True)
class DatasetSpec:
    name: str           # as in paths, params and DVC stage names
    title: str          # as the papers write it
    step_labels: bool   # per-frame sub-action labels, hence the step transitions TSA and F+S+R learn
    masks: bool         # a released mask set (FineDiving-HM); the stand-in draws masks for every dataset


DATASETS: dict[str, DatasetSpec] = {
    FINEDIVING: DatasetSpec(FINEDIVING, "FineDiving", step_labels=True, masks=True),
    MTL_AQA: DatasetSpec(MTL_AQA, "MTL-AQA", step_labels=False, masks=False),
}


class DatasetError(AqaError):
    """A dataset name the pipeline does not know."""


def dvc_stage(stage: str, dataset: str, dn_only: bool = False) -> str:
    """The DVC stage group that runs a per-variant stage (train, evaluate) on `dataset`.

    One DVC matrix cannot leave out combinations, and each dataset trains its own variant list, so
    each dataset has its own group: FineDiving's keeps the stage's name, the others add theirs.
    `dn_only`: the group of the variants trained w/ DN only (datasets.dn_only; aqa.trained), `_dn`
    after the stage's name (train_dn, train_dn_mtl_aqa).
    """
    stage = f"{stage}_dn" if dn_only else stage
    return stage if dataset == FINEDIVING else f"{stage}_{dataset_spec(dataset).name}"


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


@dataclass(frozen=True)
class DiveRange:
    """Where one annotated dive lies in its raw competition video (absolute frame numbers)."""

    video: str   # folder / file stem of the video, e.g. "FINAWorldChampionships2019_Men3m_final_r1", "01"
    idx: int
    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1


def read_ranges(dataset: str, annotations_dir: str | Path) -> list[DiveRange]:
    """Every annotated dive's frame range, from the dataset's raw annotation folder."""
    dataset_spec(dataset)
    if dataset == FINEDIVING:
        from aqa.data.finediving import read_finediving

        return [DiveRange(d.video, d.idx, d.start_frame, d.end_frame)
                for d in read_finediving(annotations_dir).dives.values()]
    from aqa.data.mtl_aqa import read_mtl_dives, video_name

    return [DiveRange(video_name(d.video), d.idx, d.start_frame, d.end_frame)
            for d in read_mtl_dives(annotations_dir).values()]
