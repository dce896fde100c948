"""The C++ runtime's C ABI (runtime/cpp/include/disseg/disseg.h) from Python through ctypes: what another
language's FFI sees, and how the tests and benchmarks hold libdisseg to the Python runtime."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .errors import EXIT_BAD_INPUT, EXIT_DONE, BadInput, DisError, ModelFileError

_P = ctypes.c_void_p


def load_library(path: str | Path) -> ctypes.CDLL:
    """Open libdisseg.so (a file, or a build folder holding one) and declare the C functions' types."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("libdisseg.so*"))
        if not found:
            raise BadInput(
                f"{path}: no libdisseg.so here; build it: cmake -S runtime/cpp -B build && cmake --build build"
            )
        path = found[0]
    lib = ctypes.CDLL(str(path))
    signatures = {
        "disseg_create": ([ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_P)], ctypes.c_int),
        "disseg_segment": ([_P, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_size_t, _P, _P], ctypes.c_int),
        "disseg_segment_wide": (
            [_P, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_size_t, _P, _P],
            ctypes.c_int,
        ),
        "disseg_segment_batch": ([_P, ctypes.c_int, _P, _P, _P, _P, _P, _P, _P], ctypes.c_int),
        "disseg_set_scene_tags": ([_P, _P, ctypes.c_int], ctypes.c_int),
        "disseg_set_scene_tag_names": ([_P, ctypes.c_char_p], ctypes.c_int),
        "disseg_version": ([], ctypes.c_char_p),
        "disseg_num_classes": ([_P], ctypes.c_int),
        "disseg_class_name": ([_P, ctypes.c_int], ctypes.c_char_p),
        "disseg_iterations": ([_P], ctypes.c_int),
        "disseg_backend_name": ([_P], ctypes.c_char_p),
        "disseg_last_error": ([], ctypes.c_char_p),
        "disseg_destroy": ([_P], None),
    }
    for name, (args, result) in signatures.items():
        func = getattr(lib, name)
        func.argtypes, func.restype = args, result
    return lib


def _packed(image: np.ndarray) -> np.ndarray:
    """An 8-bit image whose rows may be padded (row_stride) but whose pixels within a row are packed."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise BadInput(
            f"CSegmenter.segment: expected an 8-bit H x W (x C) image, got {image.dtype} {image.shape}; "
            "use disseg.runtime.image.to_bgr8 first"
        )
    packed = image.strides[1:] == ((image.shape[2], 1) if image.ndim == 3 else (1,))
    return image if packed else np.ascontiguousarray(image)


class CSegmenter:
    """libdisseg's Segmenter behind its C ABI: labels (H x W uint8) and tags for 8-bit frames of any size.

    with CSegmenter("build/cpp", "model.onnx") as seg:
        labels, tags = seg.segment(frame)
    """

    def __init__(
        self, library: str | Path | ctypes.CDLL, model: str | Path, *, backend: str = "auto", threads: int = 0
    ) -> None:
        self.lib = library if isinstance(library, ctypes.CDLL) else load_library(library)
        handle = _P()
        status = self.lib.disseg_create(str(model).encode(), backend.encode(), threads, ctypes.byref(handle))
        self._check(status, ModelFileError)
        self.handle = handle
        self.num_classes = self.lib.disseg_num_classes(handle)
        self.class_names = tuple(self.lib.disseg_class_name(handle, i).decode() for i in range(self.num_classes))
        self.backend = self.lib.disseg_backend_name(handle).decode()

    def _check(self, status: int, bad_input: type[BadInput]) -> None:
        """A disseg_status as our exceptions: DISSEG_BAD_INPUT (the exit status for bad input) as `bad_input`, any
        other failure as DisError."""
        if status == EXIT_DONE:
            return
        why = self.lib.disseg_last_error().decode()
        raise bad_input(why) if status == EXIT_BAD_INPUT else DisError(why)

    def set_scene_tags(self, tags) -> None:
        """disseg_set_scene_tags (numbers, one per class; None clears them) or, for a string of comma-separated class
        names, disseg_set_scene_tag_names."""
        if isinstance(tags, str):
            status = self.lib.disseg_set_scene_tag_names(self.handle, tags.encode())
        else:
            values = np.ascontiguousarray(tags if tags is not None else [], np.float32)
            status = self.lib.disseg_set_scene_tags(
                self.handle, values.ctypes.data if values.size else None, values.size
            )
        self._check(status, BadInput)

    @property
    def version(self) -> str:
        return self.lib.disseg_version().decode()

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = _packed(image)
        h, w = image.shape[:2]
        channels = 1 if image.ndim == 2 else image.shape[2]
        wide = self.num_classes > 256  # 16-bit labels (disseg_segment_wide) above 256 classes
        labels = np.empty((h, w), np.uint16 if wide else np.uint8)
        tags = np.empty(self.num_classes, np.float32)
        call = self.lib.disseg_segment_wide if wide else self.lib.disseg_segment
        status = call(self.handle, image.ctypes.data, h, w, channels, image.strides[0], labels.ctypes.data,
                      tags.ctypes.data)  # fmt: skip
        self._check(status, BadInput)
        return labels, tags

    def segment_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Several frames in one call (disseg_segment_batch): (labels, tags) per frame, as segment() gives them."""
        images = [_packed(image) for image in images]
        n = len(images)
        labels = [np.empty(image.shape[:2], np.uint8) for image in images]
        tags = [np.empty(self.num_classes, np.float32) for _ in images]
        pointers = lambda arrays: (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])  # noqa: E731
        ints = lambda values: (ctypes.c_int * n)(*values)  # noqa: E731
        status = self.lib.disseg_segment_batch(
            self.handle,
            n,
            pointers(images),
            ints([i.shape[0] for i in images]),
            ints([i.shape[1] for i in images]),
            ints([1 if i.ndim == 2 else i.shape[2] for i in images]),
            (ctypes.c_size_t * n)(*[i.strides[0] for i in images]),
            pointers(labels),
            pointers(tags),
        )
        self._check(status, BadInput)
        return list(zip(labels, tags))

    def close(self) -> None:
        if self.handle:
            self.lib.disseg_destroy(self.handle)
            self.handle = None

    def __enter__(self) -> CSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
