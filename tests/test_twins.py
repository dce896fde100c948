"""Facts both runtimes state, each defined once per language (runtime/*.py and runtime/cpp): read from the C++
sources and held equal to the Python constants, so neither language can drift alone."""

import math
import re
from pathlib import Path

import pytest

from disseg.runtime import contract, errors, pipeline
from disseg.runtime.atomic import LOW_SPACE
from disseg.runtime.cli_util import MAX_COUNT
from disseg.runtime.sinks import VideoSink

CPP = Path(__file__).resolve().parents[1] / "runtime" / "cpp"


def _cpp_constants(path: Path) -> dict[str, object]:
    """`constexpr` constants of one C++ file: strings, integer expressions (64 * 1024) and 3-number arrays."""
    text = path.read_text()
    found: dict[str, object] = {}
    for name, value in re.findall(r"constexpr [^=;{]*?\b(k\w+|window)\s*=\s*([^;]+);", text):
        value = value.strip()
        if value.startswith('"'):
            found[name] = value.strip('"')
        else:
            assert re.fullmatch(r"[\d\s*.]+", value), f"{path.name}: {name} = {value} is not a number or a product"
            found[name] = math.prod((float if "." in f else int)(f) for f in value.split("*"))
    for name, numbers in re.findall(r"constexpr std::array<double, 3> (k\w+)\{([^}]*)\};", text):
        found[name] = tuple(float(x) for x in numbers.split(","))
    for name, words in re.findall(r"constexpr std::array<const char\*, \d+> (k\w+)\{([^}]*)\};", text):
        found[name] = tuple(w.strip().strip('"') for w in words.split(","))
    return found


HEADER = _cpp_constants(CPP / "include" / "disseg" / "model_info.hpp")


def _cpp_string(path: Path, name: str) -> str:
    """A C++ string constant written as adjacent literals ("a " "b"), joined."""
    found = re.search(rf"\b{name}\s*=\s*((?:\s*\"(?:[^\"\\]|\\.)*\")+)\s*;", path.read_text())
    assert found, f"{path.name}: no string constant {name}"
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', found.group(1)))


def test_the_source_uri_forms_are_one_text():
    from disseg.runtime.sources import URI_FORMS

    assert _cpp_string(CPP / "src" / "sources.cpp", "kUriForms") == URI_FORMS


PAIRS = [
    ("kSchema", contract.SCHEMA),
    ("kSchemaSceneTags", contract.SCHEMA_SCENE_TAGS),
    ("kPrefix", contract.METADATA_PREFIX),
    ("kInput", contract.INPUT),
    ("kSceneTags", contract.SCENE_TAGS),
    ("kSceneTagModes", contract.SCENE_TAG_MODES),
    ("kLabels", contract.LABELS),
    ("kScores", contract.SCORES),
    ("kTags", contract.TAGS),
    ("kInputLayout", contract.INPUT_LAYOUT),
    ("kInputDtype", contract.INPUT_DTYPE),
    ("kColorOrder", contract.COLOR_ORDER),
    ("kResizeModes", contract.RESIZE_MODES),
    ("kLetterboxPad", contract.LETTERBOX_PAD),
    ("kImagenetMean", contract.IMAGENET_MEAN),
    ("kImagenetStd", contract.IMAGENET_STD),
    ("kExitDone", errors.EXIT_DONE),
    ("kExitFailed", errors.EXIT_FAILED),
    ("kExitBadInput", errors.EXIT_BAD_INPUT),
    ("kExitSignalBase", errors.EXIT_SIGNAL_BASE),
]


@pytest.mark.parametrize(("name", "python"), PAIRS, ids=[name for name, _ in PAIRS])
def test_contract_constant_is_the_same_in_cpp(name, python):
    assert name in HEADER, f"model_info.hpp no longer defines {name}"
    assert HEADER[name] == python, f"C++ {name} = {HEADER[name]!r}, Python {python!r}"


def test_every_contract_constant_of_the_header_is_checked():
    assert set(HEADER) == {name for name, _ in PAIRS}, "a constant was added to model_info.hpp: pair it here"


def test_runtime_constants_are_the_same_in_cpp():
    assert _cpp_constants(CPP / "src" / "atomic.cpp")["kLowSpace"] == LOW_SPACE
    assert _cpp_constants(CPP / "src" / "sinks.cpp")["kCheckSpaceEvery"] == VideoSink.CHECK_SPACE_EVERY
    assert _cpp_constants(CPP / "apps" / "run_options.cpp")["kMaxCount"] == MAX_COUNT
    assert _cpp_constants(CPP / "include" / "disseg" / "io.hpp")["window"] == pipeline.WINDOW


def test_source_facts_are_the_same_in_cpp():
    from disseg.runtime import sources

    found = _cpp_constants(CPP / "src" / "sources.cpp")
    io = _cpp_constants(CPP / "include" / "disseg" / "io.hpp")
    assert io["kDefaultFps"] == sources.DEFAULT_FPS and io["kDefaultMaxReconnects"] == sources.DEFAULT_MAX_RECONNECTS
    assert found["kOpenTimeoutMs"] == sources.OPEN_TIMEOUT_MS and found["kReadTimeoutMs"] == sources.READ_TIMEOUT_MS
    assert set(found["kLiveElements"]) == sources.LIVE_ELEMENTS


def test_secret_keys_are_the_same_in_cpp():
    from disseg.runtime import redaction

    found = _cpp_constants(CPP / "src" / "redaction.cpp")
    assert set(found["kSecretKeys"]) == redaction.SECRET_KEYS and len(found["kSecretKeys"]) == len(
        redaction.SECRET_KEYS
    )
    assert found["kMask"] == redaction.MASK


def test_channel_keeping_ops_are_the_same_in_cpp():
    found = _cpp_constants(CPP / "src" / "model_info.cpp")["kChannelKeeping"]
    assert set(found) == contract.CHANNEL_KEEPING and len(found) == len(contract.CHANNEL_KEEPING)


def test_text_file_limit_is_the_same_in_cpp():
    from disseg.runtime.textfile import MAX_TEXT_BYTES

    assert _cpp_constants(CPP / "src" / "util.hpp")["kMaxTextBytes"] == MAX_TEXT_BYTES


def test_c_abi_statuses_are_the_exit_statuses():
    header = (CPP / "include" / "disseg" / "disseg.h").read_text()
    statuses = {name: int(value) for name, value in re.findall(r"(DISSEG_\w+) = (\d+)", header)}
    assert statuses == {
        "DISSEG_OK": errors.EXIT_DONE,
        "DISSEG_ERROR": errors.EXIT_FAILED,
        "DISSEG_BAD_INPUT": errors.EXIT_BAD_INPUT,
    }


def test_model_file_error_is_bad_input_in_both_languages():
    assert issubclass(errors.ModelFileError, errors.BadInput)
    header = (CPP / "include" / "disseg" / "model_info.hpp").read_text()
    assert re.search(r"class DISSEG_API ModelFileError : public BadInput\b", header)


def test_the_error_classes_are_one_tree():
    """The same failures raise the same class in both languages (DisError is C++'s Error)."""
    cpp = {}
    for header in ("model_info.hpp", "io.hpp"):
        text = (CPP / "include" / "disseg" / header).read_text()
        cpp.update(dict(re.findall(r"class DISSEG_API (\w+) : public (\w+)", text)))
    python = {
        name: cls.__bases__[0].__name__
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.DisError) and cls is not errors.DisError
    }
    rename = {"DisError": "Error"}
    assert {k: rename.get(v, v) for k, v in python.items()} == {k: v for k, v in cpp.items() if k != "Error"}
