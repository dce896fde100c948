"""Test-time feature refinement with the energy's gradient written out (docs/method.md).

E(u1, v1) = 1/2 ||z3(u1, v1) - I_small||^2 / N  (+ tag_weight * BCE(v3, T) / K when tags are given),
N = 3 h w per image. Plain ops only, so the unrolled loop exports to ONNX without autograd.

Scene tags at run time (dis-export --scene-tags) enter the same BCE term, T_k = 1 "may appear", 0 "absent", soft
values between; `scene_tag_weight` switches the term off for an image whose tags are all ones (nothing is known), so
all-ones tags give the model without tags exactly. `one_sided=True` is the variant that would need no switch, a term
that only pulls sigma(v3_k) down to T_k from above; benchmarks/scene_tags.py measured it and it loses mIoU (the
energy's gain with tags comes from pulling the named classes up), so nothing ships it.
Training, evaluation and export all call `energy_gradient`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import DIS, Heads

VJP_CONVS = ("rec_c", "rec_b", "rec_a", "seg")  # the chain the gradient runs back through, output first


def vjp_weights(model: DIS) -> tuple[torch.Tensor, ...]:
    """Weights for the input-VJPs of the image subnet's convs and the labelmap conv, in VJP_CONVS order.

    convT(g, W, p) of a stride-1 'same' conv equals conv(g, W^T flipped, k - 1 - p): the same numbers,
    and inference runtimes run Conv far faster than ConvTranspose. `refine` makes these once, so an
    unrolled graph holds one copy shared by every step."""
    return tuple(getattr(model, name).weight.transpose(0, 1).flip((2, 3)) for name in VJP_CONVS)


def _vjp(g: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(g, weight, padding=weight.shape[-1] // 2)


def energy_gradient(
    model: DIS,
    u1: torch.Tensor,
    v1: torch.Tensor,
    image_small: torch.Tensor,
    *,
    tags: torch.Tensor | None = None,
    tag_weight: float | torch.Tensor = 0.0,
    one_sided: bool = False,
    weights: tuple[torch.Tensor, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Heads]:
    """Return (dE/du1, dE/dv1, heads at (u1, v1)); `weights` from vjp_weights (made here when None); `tag_weight` a
    number or a B x 1 tensor (per image, scene_tag_weight); `one_sided`: the measured variant (module docstring)."""
    w_c, w_b, w_a, w_seg = weights if weights is not None else vjp_weights(model)
    h = model.heads(u1, v1)
    n = h.z3.shape[1] * h.z3.shape[2] * h.z3.shape[3]
    g = (h.z3 - image_small) / n
    g = _vjp(g, w_c) * (h.a2 > 0).to(g.dtype)
    g = _vjp(g, w_b) * (h.a1 > 0).to(g.dtype)
    g = _vjp(g, w_a)
    g_u1 = _vjp(g, w_seg)
    g_v1 = g_u1.sum((2, 3))  # adjoint of the spatial broadcast of v1
    if tags is not None:
        g_v3 = torch.sigmoid(h.v3) - tags
        if one_sided:
            g_v3 = torch.relu(g_v3)
        g_v3 = g_v3 * (tag_weight / h.v3.shape[1])
        g_v2 = g_v3 @ model.tag.weight
        g_v1 = g_v1 + g_v2
        g_u1 = g_u1 + g_v2[:, :, None, None] / (u1.shape[2] * u1.shape[3])
    return g_u1, g_v1, h


def refine(
    model: DIS,
    u1: torch.Tensor,
    v1: torch.Tensor,
    image_small: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    tags: torch.Tensor | None = None,
    tag_weight: float | torch.Tensor = 0.0,
    one_sided: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (u1, v1) after `steps` gradient steps of size `step_size` on the energy."""
    weights = vjp_weights(model) if steps else None
    for _ in range(steps):
        g_u1, g_v1, _ = energy_gradient(
            model, u1, v1, image_small, tags=tags, tag_weight=tag_weight, one_sided=one_sided, weights=weights
        )
        u1 = u1 - step_size * g_u1
        v1 = v1 - step_size * g_v1
    return u1, v1


def scene_tag_weight(tags: torch.Tensor, tag_weight: float) -> torch.Tensor:
    """B x 1 tag weights for run-time scene tags: `tag_weight` where an image's tags say something (some entry below
    1), 0 where they are all ones, so that all-ones tags are the model without tags."""
    return (tags.amin(1, keepdim=True) < 1).to(tags.dtype) * tag_weight


def energy(
    model: DIS, u1, v1, image_small, *, tags=None, tag_weight: float = 0.0, one_sided: bool = False
) -> torch.Tensor:
    """The energy itself (summed over the batch); used to check `energy_gradient` against autograd."""
    h = model.heads(u1, v1)
    n = h.z3[0].numel()
    e = 0.5 * ((h.z3 - image_small) ** 2).sum() / n
    if tags is not None:
        bce = F.binary_cross_entropy_with_logits(h.v3, tags, reduction="none")
        if one_sided:  # BCE less its minimum, entropy(T), where sigma(v3) is above T; 0 below
            floor = torch.special.entr(tags) + torch.special.entr(1 - tags)
            bce = torch.where(torch.sigmoid(h.v3) > tags, bce - floor, torch.zeros_like(bce))
        e = e + (tag_weight * bce).sum() / h.v3.shape[1]
    return e
