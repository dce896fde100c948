"""The values the runtime's commands offer and its code checks, one list or figure each. Imports nothing, so a command
can build its options before OpenCV or ONNX Runtime are imported (and say so in one line when they are missing).
The backends' names come from their table, `backends.CHOICES`."""

VIEWS = ("overlay", "mask", "side-by-side")
DEFAULT_FPS = 30.0  # a source that does not say its frame rate, and the videos written from it (C++: io.hpp)
DEFAULT_MAX_BATCH = 8  # the largest batch of a dynamic-batch engine or a Triton model, unless told
MAX_BATCH = 1024  # the largest batch any option takes, and the bound a dynamic batch is traced with
DEFAULT_MAX_RECONNECTS = 10  # a live source that drops is reopened this many times in a row, then ends
