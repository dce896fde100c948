"""Which part of an exported graph a node belongs to, from the module scope torch.onnx records per node.

The feature extractor (backbone and image-level feature) is where reduced precision pays; the unrolled
refinement, the heads and the final logits stay in float (FP16 export and INT8 calibration alike).
"""
from __future__ import annotations

import ast

SCOPE_KEY = "pkg.torch.onnx.name_scopes"
FEATURE_SCOPES = ("model.backbone", "model.image_fc")


def node_scopes(node) -> list[str]:
    """The PyTorch module scopes a node was traced in, e.g. ['', 'model.backbone', 'model.backbone.4', ...]."""
    for prop in node.metadata_props:
        if prop.key == SCOPE_KEY:
            return list(ast.literal_eval(prop.value))
    return []


def in_feature_extractor(node) -> bool:
    return any(s in FEATURE_SCOPES for s in node_scopes(node))


def layer_group(node) -> str | None:
    """The backbone stage a node belongs to ('model.backbone.4', ...), None outside the feature extractor."""
    scopes = node_scopes(node)
    if not any(s in FEATURE_SCOPES for s in scopes):
        return None
    deeper = [s for s in scopes if s.startswith("model.backbone.") and s.count(".") == 2]
    return deeper[0] if deeper else next(s for s in scopes if s in FEATURE_SCOPES)
