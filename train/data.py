"""PyTorch views of the data sets in disseg.runtime.dataset: joint augmentation for training, runtime-identical
resizing for evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from disseg.runtime.dataset import Sample, load_eval_item, read_mask
from disseg.runtime.image import read_image
from disseg.runtime.metrics import IGNORE_INDEX, tags_from_labels


def _to_rgb_tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))).float().div_(255)


class TrainSet(Dataset):
    """Random scale, crop and flip applied jointly to image and mask, seeded per (seed, epoch, index).

    Seeding each sample makes augmentation independent of worker and process layout, so a resumed or
    distributed run sees exactly the crops a single uninterrupted run sees.
    """

    def __init__(
        self, samples: list[Sample], num_classes: int, size: int, *, seed: int = 0, augment: bool = True
    ) -> None:
        self.samples, self.num_classes, self.size, self.seed, self.epoch = samples, num_classes, size, seed, 0
        if augment:
            fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX}
            self.transform = v2.Compose(
                [
                    v2.RandomResize(int(0.75 * size), int(1.5 * size)),
                    v2.RandomCrop(size, pad_if_needed=True, fill=fill),
                    v2.RandomHorizontalFlip(),
                ]
            )
        else:
            self.transform = v2.Resize((size, size), antialias=True)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.samples[index]
        image = tv_tensors.Image(_to_rgb_tensor(read_image(s.image)))
        if s.mask is not None:
            mask = tv_tensors.Mask(torch.from_numpy(read_mask(s.mask, self.num_classes)).long())
        else:  # weak image: no mask, only its tags
            mask = tv_tensors.Mask(torch.full(image.shape[1:], IGNORE_INDEX, dtype=torch.long))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            image, mask = self.transform(image, mask)
        if s.tags is not None:
            tags = torch.zeros(self.num_classes)
            tags[list(s.tags)] = 1.0
        else:
            tags = torch.from_numpy(tags_from_labels(mask.numpy(), self.num_classes))
        return {"image": image.as_subclass(torch.Tensor), "mask": mask.as_subclass(torch.Tensor), "tags": tags}


class EvalSet(Dataset):
    """Images resized to the model input exactly as the runtime does; masks kept at native resolution."""

    def __init__(self, samples: list[Sample], num_classes: int, height: int, width: int) -> None:
        self.samples, self.num_classes, self.height, self.width = samples, num_classes, height, width

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return load_eval_item(self.samples[index], self.num_classes, self.height, self.width)


def collate_eval(items: list[dict]) -> dict:
    return {key: [item[key] for item in items] for key in items[0]}
