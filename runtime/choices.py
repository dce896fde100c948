"""The values the runtime's commands offer and its code checks, one list each. Imports nothing, so a command
can build its options before OpenCV or ONNX Runtime are imported (and say so in one line when they are missing).
The backends' names come from their table, `backends.CHOICES`."""

VIEWS = ("overlay", "mask", "side-by-side")
