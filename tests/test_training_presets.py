"""The in-memory image cache, the batch augmentation, and that training scores what serving sees."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from handler.preprocessing import eval_transform, model_input
from imaging.decode import decode_image
from tests.conftest import FIXTURES
from training.presets import BatchAugment, ImageBatches, decode_frames, to_model_input, train_cache_shape

CPU = torch.device("cpu")


def fixture_paths() -> list[Path]:
    return sorted((FIXTURES / "images").glob("*.jpg"))


def test_decode_frames_is_a_uint8_cache_at_the_requested_shape(tmp_path: Path) -> None:
    portrait = tmp_path / "portrait.png"
    Image.new("RGB", (30, 50), (10, 20, 30)).save(portrait)
    images = decode_frames([*fixture_paths()[:2], portrait], (48, 64))
    assert images.shape == (3, 3, 48, 64) and images.dtype == torch.uint8
    assert (images[2] == torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)).all()


# 48x64 also takes the JPEG draft path: the 200x150 fixtures decode at half size there.
@pytest.mark.parametrize("size", [(96, 128), (48, 64)])
def test_training_evaluation_builds_exactly_the_served_tensor(size: tuple[int, int]) -> None:
    paths = fixture_paths()
    trained = to_model_input(decode_frames(paths, size), CPU, colour_constancy=True, channels_last=False)
    # What SkinHandler.preprocess and .inference do with each request body.
    frames = [eval_transform(decode_image(path.read_bytes(), draft_size=max(size)), size) for path in paths]
    served = model_input(torch.stack(frames), colour_constancy=True)
    assert trained.dtype == served.dtype == torch.float32
    assert torch.equal(trained, served)


def test_eval_batches_yield_every_image_once_in_order() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4)
    batches = ImageBatches(images, torch.arange(10), batch_size=4)
    assert len(batches) == 3 == len(list(batches))
    got_images, got_labels = zip(*batches)
    assert torch.equal(torch.cat(got_images), images) and torch.equal(torch.cat(got_labels), torch.arange(10))


def test_training_batches_augment_each_image_on_its_own() -> None:
    size = (24, 32)
    generator = torch.Generator().manual_seed(0)
    texture = torch.randint(0, 256, (1, 3, *train_cache_shape(size)), dtype=torch.uint8, generator=generator)
    images, labels = texture.expand(8, -1, -1, -1).contiguous(), torch.arange(8)

    def sampler() -> torch.utils.data.WeightedRandomSampler:
        return torch.utils.data.WeightedRandomSampler(torch.ones(8), 10, generator=torch.Generator().manual_seed(1))

    batches = ImageBatches(images, labels, 4, sampler(), BatchAugment(size, seed=0))
    assert len(batches) == 10 // 4  # the short last batch is dropped
    out = list(batches)
    assert len(out) == 2
    # The labels follow the sampler's draws, in order.
    assert torch.cat([batch_labels for _, batch_labels in out]).tolist() == list(sampler())[:8]
    for batch, _ in out:
        assert batch.dtype == torch.float32 and batch.shape == (4, 3, *size)
        assert batch.min() >= 0 and batch.max() <= 255
        # Identical inputs, yet every pair in the batch differs: the randomness is per image.
        differences = (batch.unsqueeze(0) - batch.unsqueeze(1)).abs().flatten(2).mean(dim=2)
        assert (differences + torch.eye(4) * 100 > 5).all()


def test_model_input_can_be_channels_last() -> None:
    batch = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    assert to_model_input(batch, CPU, False, channels_last=True).is_contiguous(memory_format=torch.channels_last)
