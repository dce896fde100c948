"""Damaged model files and sidecars may only raise ModelFileError from the Python reader: never another
exception (a traceback from dis-run), a crash or a hang. The C++ reader has the same test (ctest
Contract.FuzzedFilesOnlyRaiseModelFileError); issue 12 found `TypeError: ModelInfo.__init__() missing ...
'input_name'` in 5 of 27,884 mutated files."""

from __future__ import annotations

import json
import random

import pytest

from disseg.runtime.contract import read_model_info
from disseg.runtime.engine_cache import built_for
from disseg.runtime.errors import ModelFileError


def _minimal() -> dict:
    return {
        "schema": "disseg-model/1",
        "input_name": "image",
        "input_height": 64,
        "input_width": 96,
        "batch": 1,
        "class_names": ["background", "cat"],
        "palette": [[0, 0, 0], [128, 0, 0]],
        "iterations": 3,
        "step_size": 30.0,
        "tag_weight": 0.3,
        "precision": "fp32",
        "outputs": ["labels", "tags"],
    }


def test_mutated_and_truncated_onnx_files(tiny_onnx, tmp_path):
    model = tiny_onnx.read_bytes()
    meta = model.find(b"disseg.") - 16
    rng = random.Random(12345)
    path = tmp_path / "m.onnx"
    refused = 0
    for i in range(600):
        data = bytearray(model)
        if i % 10 == 9:
            del data[rng.randrange(len(model)) :]
        else:
            start = meta if i % 2 else 0
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(start, len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            read_model_info(path)
        except ModelFileError:
            refused += 1
    assert refused > 50  # the metadata mutations do reach the reader


ODD = [None, 7, -3, 2.5, "x", [], {}, [1, "a"], True]


@pytest.mark.parametrize("seed", range(3))
def test_sidecars_with_missing_keys_and_odd_values(tmp_path, seed):
    rng = random.Random(seed)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    for _ in range(300):
        values = _minimal()
        key = rng.choice(sorted(values))
        if rng.random() < 0.3:
            del values[key]
        else:
            values[key] = rng.choice(ODD)
        if rng.random() < 0.5:
            values["extra"] = {"engine": rng.choice(ODD + [{"tensorrt_version": rng.choice(ODD)}])}
        (tmp_path / "m.engine.json").write_text(json.dumps({"disseg": values}))
        try:
            info = read_model_info(engine)
        except ModelFileError:
            continue
        built_for(info)  # what the runtime asks of an engine's facts next


def test_missing_input_name_is_one_line(tmp_path):
    values = _minimal()
    del values["input_name"]
    (tmp_path / "m.engine").write_bytes(b"x")
    (tmp_path / "m.engine.json").write_text(json.dumps({"disseg": values}))
    with pytest.raises(ModelFileError, match="lacks 'input_name'"):
        read_model_info(tmp_path / "m.engine")
