"""The C++ runtime under test: a build of runtime/cpp named by $DISSEG_CPP_BUILD (.ci/run builds one).
Without it these tests skip, unless $DISSEG_REQUIRE_CPP=1 (CI), where a missing build fails them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cpp_build() -> Path:
    folder = os.environ.get("DISSEG_CPP_BUILD")
    missing = None
    if not folder:
        missing = "DISSEG_CPP_BUILD is not set (build runtime/cpp as the README says)"
    elif not (Path(folder) / "dis_run_cpp").is_file() or not list(Path(folder).glob("libdisseg.so*")):
        missing = f"{folder} has no dis_run_cpp / libdisseg.so"
    if missing:
        if os.environ.get("DISSEG_REQUIRE_CPP") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    return Path(folder)
