import pytest
import torch

from disseg.train.config import DISConfig
from disseg.train.model import DIS
from disseg.train.refine import energy, energy_gradient, refine


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("seed,classes,batch,size", [(0, 5, 2, 64), (1, 3, 1, 48), (2, 8, 3, 40)])
@pytest.mark.parametrize("with_tags", [False, True])
def test_gradient_equals_autograd_float64(seed, classes, batch, size, with_tags):
    torch.manual_seed(seed)
    model = DIS(DISConfig(class_names=tuple(f"c{i}" for i in range(classes)), stages=2)).double().eval()
    u1, v1, image_small = model.features(torch.randn(batch, 3, size, size, dtype=torch.float64))
    u1 = (u1 + torch.randn_like(u1)).detach().requires_grad_()  # random point, not just the forward's
    v1 = (v1 + torch.randn_like(v1)).detach().requires_grad_()
    tags = (torch.rand(batch, classes, dtype=torch.float64) > 0.5).double() if with_tags else None
    e = energy(model, u1, v1, image_small, tags=tags, tag_weight=0.7)
    want_u, want_v = torch.autograd.grad(e, (u1, v1))
    got_u, got_v, _ = energy_gradient(model, u1, v1, image_small, tags=tags, tag_weight=0.7)
    assert _rel(got_u, want_u) < 1e-10
    assert _rel(got_v, want_v) < 1e-10


@pytest.mark.parametrize("seed", [0, 1])
def test_one_sided_gradient_equals_autograd_float64(seed):
    """The one-sided tag term: absent (0), soft (0.3) and may-appear (1) classes in one vector."""
    torch.manual_seed(seed)
    model = DIS(DISConfig(class_names=tuple(f"c{i}" for i in range(6)), stages=2)).double().eval()
    u1, v1, image_small = model.features(torch.randn(2, 3, 48, 48, dtype=torch.float64))
    u1 = (u1 + torch.randn_like(u1)).detach().requires_grad_()
    v1 = (v1 + 3 * torch.randn_like(v1)).detach().requires_grad_()
    tags = torch.tensor([[0, 0.3, 1, 1, 0, 0.3], [1, 0, 0.3, 0, 1, 1]], dtype=torch.float64)
    e = energy(model, u1, v1, image_small, tags=tags, tag_weight=0.7, one_sided=True)
    want_u, want_v = torch.autograd.grad(e, (u1, v1))
    got_u, got_v, h = energy_gradient(model, u1, v1, image_small, tags=tags, tag_weight=0.7, one_sided=True)
    assert 0 < int((torch.sigmoid(h.v3) > tags).sum()) < tags.numel()  # both sides of the hinge are exercised
    assert _rel(got_u, want_u) < 1e-10
    assert _rel(got_v, want_v) < 1e-10


def test_scene_tags_all_ones_are_the_model_without_tags_and_others_move_the_tags():
    from disseg.train.refine import scene_tag_weight

    torch.manual_seed(0)
    model = DIS(DISConfig(class_names=("a", "b", "c", "d"), stages=2)).eval()
    u1, v1, image_small = model.features(torch.randn(2, 3, 48, 48))
    plain = refine(model, u1, v1, image_small, steps=3, step_size=30.0)
    tags = torch.tensor([[1.0, 1, 1, 1], [1, 0, 1, 0]])
    weight = scene_tag_weight(tags, 5.0)
    assert weight.flatten().tolist() == [0.0, 5.0]
    got = refine(model, u1, v1, image_small, steps=3, step_size=30.0, tags=tags, tag_weight=weight)
    assert torch.equal(plain[0][0], got[0][0]) and torch.equal(plain[1][0], got[1][0])  # all ones: untouched
    v3_plain, v3_got = model.heads(*plain).v3[1], model.heads(*got).v3[1]
    assert (v3_got[[1, 3]] < v3_plain[[1, 3]]).all() and (v3_got[[0, 2]] > v3_plain[[0, 2]]).all()


def test_per_image_tag_weight_equals_autograd_float64():
    torch.manual_seed(3)
    model = DIS(DISConfig(class_names=tuple(f"c{i}" for i in range(5)), stages=2)).double().eval()
    u1, v1, image_small = model.features(torch.randn(2, 3, 40, 40, dtype=torch.float64))
    u1, v1 = u1.detach().requires_grad_(), v1.detach().requires_grad_()
    tags = torch.tensor([[1, 0, 0.5, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    weight = torch.tensor([[0.7], [0.2]], dtype=torch.float64)
    want_u, want_v = torch.autograd.grad(energy(model, u1, v1, image_small, tags=tags, tag_weight=weight), (u1, v1))
    got_u, got_v, _ = energy_gradient(model, u1, v1, image_small, tags=tags, tag_weight=weight)
    assert _rel(got_u, want_u) < 1e-10 and _rel(got_v, want_v) < 1e-10


def test_small_steps_lower_the_energy():
    torch.manual_seed(0)
    model = DIS(DISConfig(class_names=("a", "b", "c"), stages=2)).double().eval()
    u1, v1, image_small = model.features(torch.randn(2, 3, 64, 64, dtype=torch.float64))
    before = energy(model, u1, v1, image_small)
    u1r, v1r = refine(model, u1, v1, image_small, steps=3, step_size=1.0)
    assert energy(model, u1r, v1r, image_small) < before
    same = refine(model, u1, v1, image_small, steps=0, step_size=1.0)
    assert same[0] is u1 and same[1] is v1


def test_train_through_takes_the_loss_after_the_steps_and_backpropagates_through_them():
    from disseg.train.engine import _losses

    torch.manual_seed(0)
    cfg = DISConfig(class_names=("a", "b", "c"), stages=2, step_size=200.0)
    x = torch.rand(2, 3, 48, 48)
    labels = torch.randint(0, 3, (2, 48, 48))
    tags = torch.ones(2, 3)
    plain = DIS(cfg).eval()
    through = DIS(cfg.replace(train_through=2)).eval()
    through.load_state_dict(plain.state_dict())
    terms0, terms2 = _losses(plain, x, labels, tags), _losses(through, x, labels, tags)
    # The same terms as scoring the heads on features refined by hand, two steps.
    u1, v1, small = through.features(through.normalize(x))
    h = through.heads(*refine(through, u1, v1, small, steps=2, step_size=200.0))
    logits = torch.nn.functional.interpolate(h.u3, size=(48, 48), mode="bilinear")
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(terms2[0], ce, rtol=1e-5) and not torch.allclose(terms0[0], terms2[0])
    # The image subnet's weights get gradient through the refinement (not only through z3's own loss term).
    through.zero_grad()
    terms2[0].backward()
    assert through.rec_a.weight.grad is not None and through.rec_a.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("rule,expected", [("ignore", 255), ("relabel", 1)])
def test_a_pseudo_label_the_tags_rule_out_is_ignored_or_relabelled(rule, expected):
    from disseg.train.engine import weak_targets

    cfg = DISConfig(class_names=("bg", "ember_field", "ember_street"), stages=2, pseudo_ruled_out=rule, iters_train=0)
    model = DIS(cfg)
    with torch.no_grad():  # every pixel scores ember_street > ember_field > background; the tags allow ember_field
        model.seg.weight.zero_()
        model.seg.bias.copy_(torch.tensor([0.0, 40.0, 50.0]))
        model.tag.weight.zero_()
        model.tag.bias.copy_(torch.tensor([0.0, 20.0, -20.0]))
    labels, cleaned = weak_targets(model, torch.rand(2, 3, 32, 32), torch.tensor([[0.0, 1.0, 0.0]] * 2))
    assert cleaned[:, 1].min() > 0.99 and cleaned[:, 2].max() < 0.01
    assert (labels == expected).all()
