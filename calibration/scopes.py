"""Which part of an exported graph a node belongs to, read from the mark dis-export puts on every node.

The feature extractor (backbone and image-level feature) is where reduced precision pays; the unrolled
refinement, the heads and the final logits stay in float (FP16 export and INT8 calibration alike). Export
knows the modules (train/model.py names them, export/unroll.py holds the model) and writes each node's part
as `PART_KEY` = "features/<layer group>" or "float"; this module only reads those marks.
"""

from __future__ import annotations

PART_KEY = "disseg.part"
FEATURES = "features/"
FLOAT = "float"


def node_part(node) -> str | None:
    for prop in node.metadata_props:
        if prop.key == PART_KEY:
            return prop.value
    return None


def in_feature_extractor(node) -> bool:
    return (node_part(node) or "").startswith(FEATURES)


def layer_group(node) -> str | None:
    """The feature extractor's layer group a node belongs to (e.g. 'backbone.4'), None outside it."""
    part = node_part(node) or ""
    return part[len(FEATURES) :] if part.startswith(FEATURES) else None
