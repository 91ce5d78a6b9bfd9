"""The `aqa` command's failures: an expected one (bad params, a missing or unwritable path) is one
line `aqa <stage>: error: <message>` on stderr and exit 1, its traceback in the --log file only;
a bug keeps its traceback. `aqa check-params` validates the whole file and writes a fixed stamp."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from aqa.params import CHECKED_STAMP

AQA = Path(sys.executable).with_name("aqa")


def _aqa(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(AQA), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def _params(tmp_path: Path, params: dict, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _one_error_line(proc: subprocess.CompletedProcess, stage: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"aqa {stage}: error: "), lines[0]
    return lines[0]


def test_a_misspelled_key_anywhere_fails_any_stage_in_one_line(tmp_path, repo_params):
    p = copy.deepcopy(repo_params)
    p["train"]["epoch"] = p["train"].pop("epochs")
    params = _params(tmp_path, p)
    log, out = tmp_path / "logs" / "fetch_i3d.log", tmp_path / "i3d"

    proc = _aqa("fetch-i3d", "--params", params, "--log", log, "--out", out)

    line = _one_error_line(proc, "fetch-i3d")
    assert f"{params}: train.epoch: unknown key (did you mean train.epochs?)" in line
    assert not out.exists()
    logged = log.read_text()
    assert "Traceback" in logged and "ParamsError" in logged and "train.epoch: unknown key" in logged


def test_a_crop_larger_than_the_frames_is_refused_before_the_cache_is_touched(tmp_path, repo_params):
    p = copy.deepcopy(repo_params)
    p["extract_features"]["crop"] = 300
    params = _params(tmp_path, p)
    cache = tmp_path / "features"
    (cache / "01" / "1").mkdir(parents=True)
    (cache / "01" / "1" / "pooled.npy").write_bytes(b"kept")
    stand_in = tmp_path / "stand_in"  # inputs are never read: params are checked first
    stand_in.mkdir()

    proc = _aqa("extract-features", "--params", params, "--frames", stand_in, "--annotations", stand_in,
                "--weights", stand_in, "--out", cache)

    line = _one_error_line(proc, "extract-features")
    assert line.endswith(f"{params}: extract_features.crop = 300 exceeds extract_features.resize [200, 112]")
    assert (cache / "01" / "1" / "pooled.npy").read_bytes() == b"kept"
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == [Path("01"), Path("01/1"),
                                                                      Path("01/1/pooled.npy")]


def test_check_params_writes_a_fixed_stamp_and_removes_it_when_invalid(tmp_path, repo_params):
    params = _params(tmp_path, repo_params)
    stamp = tmp_path / ".aqa" / "params.checked"

    assert _aqa("check-params", "--params", params, "--out", stamp).returncode == 0
    first = stamp.read_bytes()
    assert first == CHECKED_STAMP.encode()
    assert _aqa("check-params", "--params", params, "--out", stamp).returncode == 0
    assert stamp.read_bytes() == first  # no time or path in it: DVC sees the same output

    bad = copy.deepcopy(repo_params)
    bad["train"]["lr"] = "1e-3x"
    line = _one_error_line(_aqa("check-params", "--params", _params(tmp_path, bad), "--out", stamp),
                           "check-params")
    assert "train.lr: '1e-3x' is not of type 'number'" in line
    assert not stamp.exists()


def test_check_params_reads_exponent_numbers(tmp_path):
    repo_text = (Path(__file__).resolve().parents[2] / "params.yaml").read_text()
    params = tmp_path / "params.yaml"
    params.write_text(repo_text.replace("lr: 0.001", "lr: 1e-3"))
    proc = _aqa("check-params", "--params", params)
    assert proc.returncode == 0, proc.stderr


def test_check_params_refuses_external_inputs_that_are_not_there(tmp_path, repo_params):
    p = copy.deepcopy(repo_params)
    p["fetch_i3d"]["weights_path"] = str(tmp_path / "missing.pt")
    p["synthesize_videos"]["finediving"]["source_annotations"] = str(tmp_path)   # a folder: fine
    p["synthesize_videos"]["mtl_aqa"]["source_annotations"] = str(tmp_path / "no_mtl_aqa")
    p["extract_frames"]["frames_root"]["finediving"] = str(_params(tmp_path, {}, "a_file.yaml"))
    p["extract_frames"]["masks_root"]["finediving"] = str(tmp_path / "no_masks")
    stamp = tmp_path / "params.checked"
    line = _one_error_line(_aqa("check-params", "--params", _params(tmp_path, p), "--out", stamp), "check-params")
    assert f"fetch_i3d.weights_path = '{tmp_path / 'missing.pt'}': does not exist" in line
    assert f"extract_frames.masks_root.finediving = '{tmp_path / 'no_masks'}': does not exist" in line
    assert "extract_frames.frames_root.finediving = " in line and "a_file.yaml': not a folder" in line
    assert f"synthesize_videos.mtl_aqa.source_annotations = '{tmp_path / 'no_mtl_aqa'}': does not exist" in line
    assert "finediving.source_annotations" not in line
    # a dataset that does not run is not looked at
    p["datasets"].update(run=["finediving"], variants={**p["datasets"]["variants"], "mtl_aqa": []})
    line = _one_error_line(_aqa("check-params", "--params", _params(tmp_path, p), "--out", stamp), "check-params")
    assert "no_mtl_aqa" not in line
    assert not stamp.exists()


def test_an_unwritable_output_path_is_one_line(tmp_path, repo_params):
    params = _params(tmp_path, repo_params)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    line = _one_error_line(_aqa("check-params", "--params", params, "--out", not_a_folder / "params.checked"),
                           "check-params")
    assert str(not_a_folder) in line


def test_click_usage_errors_stay_as_click_prints_them(tmp_path):
    proc = _aqa("check-params", "--params", tmp_path / "missing.yaml")
    assert proc.returncode == 2
    assert "Invalid value for '--params'" in proc.stderr and "Traceback" not in proc.stderr


SCRIPT = textwrap.dedent("""
    import click
    from aqa.cli import main
    from aqa.errors import AqaError

    @main.command("boom")
    @click.option("--log", "log_file", default=None)
    @click.option("--kind")
    def boom(log_file, kind):
        if kind == "bug":
            return {}["no such key"]
        raise AqaError("first line\\n  second line\\n")

    main()
""")


def test_multi_line_messages_are_folded_and_bugs_keep_their_traceback(tmp_path):
    script = tmp_path / "cli_with_boom.py"
    script.write_text(SCRIPT)
    log = tmp_path / "boom.log"

    expected = subprocess.run([sys.executable, script, "boom", "--kind", "input", "--log", log],
                              capture_output=True, text=True, timeout=60)
    assert _one_error_line(expected, "boom") == "aqa boom: error: first line; second line"
    assert "Traceback" in log.read_text()

    bug = subprocess.run([sys.executable, script, "boom", "--kind", "bug", "--log", log],
                         capture_output=True, text=True, timeout=60)
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and "KeyError: 'no such key'" in bug.stderr
    assert "KeyError: 'no such key'" in log.read_text()


def test_every_expected_failure_class_is_an_aqa_error():
    import pickle

    from aqa.data.finediving import AnnotationError
    from aqa.data.frames import FrameExtractionError
    from aqa.data.mtl_aqa import MtlAqaError
    from aqa.data.pickles import UnsafePickleError
    from aqa.data.protocol import ProtocolError
    from aqa.data.schema import SchemaError
    from aqa.data.video import VideoError
    from aqa.errors import AqaError
    from aqa.features.cache import FeatureCacheError
    from aqa.features.extract import FeatureExtractionError
    from aqa.features.transforms import FrameError
    from aqa.models.fetch_i3d import FetchError
    from aqa.models.i3d_weights import WeightsError
    from aqa.params import ParamsError

    for cls in (AnnotationError, FrameExtractionError, MtlAqaError, UnsafePickleError, ProtocolError, SchemaError,
                VideoError, FeatureCacheError, FeatureExtractionError, FrameError, FetchError, WeightsError,
                ParamsError):
        assert issubclass(cls, AqaError), cls
    # the bases they had stay, for code that catches them by those
    assert all(issubclass(c, RuntimeError) for c in (FrameExtractionError, VideoError, FetchError))
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)
