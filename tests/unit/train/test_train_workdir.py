"""Training in a work folder (the DVC stage's .aqa/work/<model folder>, aqa.workdir): a killed
job resumes there, and the model folder appears only when every seed is done."""

from __future__ import annotations

import pytest

from aqa.train.run import train_variant
from train_helpers import small_train_params, sqlite_store, tiny_dataset


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "run.json"}


@pytest.fixture()
def tiny(tmp_path, tiny_params):
    dives, cache, _ = tiny_dataset(tmp_path, 24)
    return dives, cache, small_train_params(tiny_params)


def _fr(tiny, out, work, uri, **kw):
    dives, cache, params = tiny
    return train_variant("fr-dn", features_dir=cache, dives_parquet=dives, out_dir=out, params=params,
                         tracking_uri=uri, work_dir=work, **kw)


def test_work_folder_resumes_and_publishes_the_result_of_an_uninterrupted_run(tiny, tmp_path, caplog):
    uri = sqlite_store(tmp_path)
    _fr(tiny, tmp_path / "plain", None, uri)                       # trained in the model folder itself
    out, work = tmp_path / "models" / "fr-dn", tmp_path / ".aqa/work/models/fr-dn"
    _fr(tiny, out, work, uri, max_epochs=1)                        # "killed" after epoch 0
    assert (work / "seed0" / "checkpoint.pt").is_file() and not out.exists()
    _fr(tiny, out, work, uri)
    assert _files(out) == _files(tmp_path / "plain")                # same bytes as training in place
    assert not work.exists()                                        # moved, not copied

    # the Snakemake driver (the output is still there): started from it, the seed skipped
    caplog.clear()
    with caplog.at_level("INFO"):
        _fr(tiny, out, work, uri)
    assert "finished (3 epochs), skipped" in caplog.text
    assert _files(out) == _files(tmp_path / "plain")


def test_only_the_listed_seeds_are_published(tiny, tmp_path):
    uri = sqlite_store(tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    tiny[2]["train"]["seeds"] = [0, 1]
    _fr(tiny, out, work, uri)
    assert sorted(p.name for p in out.iterdir()) == ["seed0", "seed1"]
    tiny[2]["train"]["seeds"] = [1]
    _fr(tiny, out, work, uri)
    assert sorted(p.name for p in out.iterdir()) == ["seed1"]
