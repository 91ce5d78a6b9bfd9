"""The real params.yaml shrunk to tiny sizes (one definition for every test that needs it)."""

from __future__ import annotations

from aqa.params import validate_params


def shrink(params: dict) -> dict:
    """Shrink `params` in place for tests: a few dives, small frames, short training; return it."""
    p = params
    p["synthesize_videos"].update(height=64, width=112)
    p["synthesize_videos"]["finediving"].update(num_videos=2, dives_per_video=3)
    p["synthesize_videos"]["mtl_aqa"].update(num_videos=2, dives_per_video=3)
    p["extract_frames"].update(height=64, workers=1)
    p["extract_features"].update(workers=0, batch_snippets=9)
    p["train"].update(seeds=[0], epochs=2, batch_size=2)
    for variant in p["train"]["variants"].values():   # a variant's own training settings, shrunk too
        if "epochs" in variant.get("train", {}):
            variant["train"]["epochs"] = 2
        if "seeds" in variant.get("train", {}):
            variant["train"]["seeds"] = variant["train"]["seeds"][:1]
    # FineParser (in the built-in default: its cache additions and its main model w/ DN) is left out:
    # its tiny runs are tests of their own (test_fineparser_pipeline, fineparser_cache, ...), which
    # turn it on; every other tiny project extracts and trains what it did before it was in the default.
    p["extract_features"]["fineparser"].update(finediving=False, mtl_aqa=False)
    p["datasets"]["dn_only"] = {dataset: [v for v in names if p["train"]["variants"][v]["method"] != "fineparser"]
                                for dataset, names in p["datasets"]["dn_only"].items()}   # MUSDL stays
    p["evaluate"].update(num_exemplars=2)
    validate_params(p, "tiny params")
    return p
