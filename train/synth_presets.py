"""The synthetic presets' names and split sizes (no heavy imports: the CLI reads them before any command runs)."""

PRESETS = ("easy", "hard")
PRESET_DEFAULTS = {
    "easy": {"num_train": 200, "num_val": 100, "num_weak": 400, "size": 256, "tag_drop": 0.2, "tag_add": 0.05},
    # A few labelled images per class (42 images, ~2 objects each, 21 classes), 10x as many tag-only ones whose
    # tags miss 30% of the objects and name ~0.6 absent classes per image.
    "hard": {"num_train": 42, "num_val": 105, "num_weak": 420, "size": 128, "tag_drop": 0.3, "tag_add": 0.03},
}
