import os
import pickle

import numpy as np
import pytest

from aqa.data.pickles import UnsafePickleError, load_pickle, loads_pickle


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_os_system(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*(posix|os)\.system"):
        load_pickle(path)


def test_refuses_builtins_eval():
    data = pickle.dumps(eval)  # a reference to builtins.eval
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        loads_pickle(data)


def test_round_trips_numpy_and_containers(tmp_path):
    obj = {("v", 1): {"a": np.arange(5), "s": np.int64(3), "l": [1.5, 2.0], "set": {1, 2}}}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj))
    back = load_pickle(path)
    assert np.array_equal(back[("v", 1)]["a"], np.arange(5))
    assert back[("v", 1)]["s"] == 3 and back[("v", 1)]["set"] == {1, 2}


def test_truncated_pickle_names_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(list(range(1000)))[:50])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl"):
        load_pickle(path)


def test_reads_real_finediving_files(finediving_annotations_dir):
    coarse = load_pickle(finediving_annotations_dir / "FineDiving_coarse_annotation.pkl")
    assert len(coarse) == 3000
