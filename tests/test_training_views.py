"""Training views: the circle, zoom and degradation do what they claim, a stored view renders the
same at another size, a resumed epoch repeats the uninterrupted one, and the teacher's soft targets
are the teacher's logits for exactly the views the student is shown."""
from __future__ import annotations

from pathlib import Path

import torch

from contract.classes import NUM_CLASSES
from training.engine import predict
from training.mixed_precision import Precision
from training.presets import BatchAugment, ImageBatches, StoredViewBatches, stored_views
from training.sampling import EpochSampler
from training.soft_targets import compute_soft_targets

FP32_CPU = Precision("fp32", torch.device("cpu"))


def plain_params(augment: BatchAugment, n: int, **changes: float) -> dict[str, torch.Tensor]:
    """Views that change nothing (zoom 1, no rotation, colour or degradation), but ``changes``."""
    params = augment.sample(n, torch.Generator().manual_seed(0))
    neutral = {"zoom": 1.0, "log_ratio": 0.0, "flip": 1.0, "angle": 0.0, "shift": 0.0, "circle": 0.0,
               "saturation": 1.0, "contrast": 1.0, "brightness": 1.0, "tint": 1.0, "downsample": 1.0,
               "blur": 0.0, "jpeg_quality": 0.0}
    return {key: torch.full_like(value, (neutral | changes).get(key, 0.0)) if key in neutral | changes
            else value for key, value in params.items()}


def grey_frames(n: int, size: tuple[int, int]) -> torch.Tensor:
    frames = torch.full((n, 3, *size), 180, dtype=torch.uint8)
    frames[:, :, size[0] // 3:2 * size[0] // 3, size[1] // 3:2 * size[1] // 3] = 60  # a dark "lesion"
    return frames


def test_a_neutral_view_is_the_frame_itself() -> None:
    augment = BatchAugment((30, 40))
    frames = grey_frames(2, (30, 40))
    out = augment.render(frames, plain_params(augment, 2))
    assert (out - frames.float()).abs().max() < 1.0


def test_the_circle_darkens_the_corners_and_leaves_the_centre() -> None:
    augment = BatchAugment((60, 80))
    out = augment.render(grey_frames(1, (60, 80)),
                         plain_params(augment, 1, circle=1.0, circle_radius=0.8, circle_edge=0.05,
                                      circle_grey=0.0))
    assert out[0, :, 0, 0].max() < 10 and out[0, :, -1, -1].max() < 10
    assert (out[0, :, 30, 40] - 60).abs().max() < 1


def test_zooming_out_shrinks_the_lesion_inside_skin() -> None:
    augment = BatchAugment((60, 80))
    frames = grey_frames(1, (60, 80))
    dark = lambda images: (images.mean(1) < 120).float().mean()  # noqa: E731
    out = augment.render(frames, plain_params(augment, 1, zoom=0.5))
    assert 0.2 < dark(out) / dark(frames.float()) < 0.35  # half the size: a quarter of the area
    assert (out[0, :, 0, 0] - 180).abs().max() < 2  # the margin is the photo's own skin colour


def test_degradation_blurs_and_recompresses() -> None:
    augment = BatchAugment((60, 80))
    frames = grey_frames(1, (60, 80))
    out = augment.render(frames, plain_params(augment, 1, downsample=3.0, blur=1.0, jpeg_quality=40.0))
    edge = lambda images: (images[..., 1:] - images[..., :-1]).abs().max()  # noqa: E731
    assert edge(out) < 0.7 * edge(frames.float())


def test_a_stored_view_renders_the_same_view_at_another_size() -> None:
    augment = BatchAugment((60, 80))
    frames = grey_frames(4, (69, 92))
    params = augment.sample(4, torch.Generator().manual_seed(5))
    large = augment.render(frames, params)
    small = augment.render(frames, params, (30, 40))
    downsized = torch.nn.functional.interpolate(large, size=(30, 40), mode="area")
    assert (small - downsized).abs().mean() < 12


def test_a_resumed_epoch_repeats_the_uninterrupted_one() -> None:
    frames = torch.randint(0, 256, (20, 3, 35, 46), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batches = ImageBatches(frames, torch.arange(20), 4, EpochSampler(torch.ones(20), 16, seed=1),
                           BatchAugment((30, 40), seed=1), seed=1)
    whole = list(batches.epoch(2))
    tail = list(batches.epoch(2, start=2))
    assert len(whole) == 4 and len(tail) == 2
    for (images, labels), (again, again_labels) in zip(whole[2:], tail):
        assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(whole[0][1], next(batches.epoch(3))[1])


class MeanColour(torch.nn.Module):
    """A stand-in teacher whose logits are simple functions of the input, so they can be checked."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        means = images.mean(dim=(2, 3))
        return torch.cat([means, -means, means[:, :2]], dim=1)[:, :NUM_CLASSES]


def test_soft_targets_are_the_teachers_logits_for_the_students_views(tmp_path: Path) -> None:
    frames = torch.randint(0, 256, (6, 3, 35, 46), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    augment = BatchAugment((30, 40), seed=0)
    path = tmp_path / "soft_targets.pt"
    targets = compute_soft_targets(MeanColour(), frames, augment, 3, FP32_CPU, False, path, batch_size=4)
    assert targets["logits"].shape == (6, 3, NUM_CLASSES) and path.exists()
    # The teacher's logits for view 2 of image 4, recomputed from the stored parameters.
    view = augment.render(frames[[4]], stored_views(targets["params"], torch.tensor([4]), torch.tensor([2])))
    expected, _ = predict(MeanColour(), [(view, torch.zeros(1))], FP32_CPU, False)
    torch.testing.assert_close(targets["logits"][4, 2].float(), expected[0], atol=2e-2, rtol=1e-2)

    # A stopped computation continues from its partial file to the same result.
    partial = dict(targets, done=8, logits=targets["logits"].clone())
    partial["logits"].view(-1, NUM_CLASSES)[8:] = 0
    path.unlink()
    torch.save(partial, path.with_suffix(".partial"))
    again = compute_soft_targets(MeanColour(), frames, augment, 3, FP32_CPU, False, path, batch_size=4)
    assert torch.equal(again["logits"], targets["logits"])

    # The student gets the logits stored for the view it is shown.
    batches = StoredViewBatches(frames, torch.arange(6), 3, EpochSampler(torch.ones(6), 6, seed=0),
                                BatchAugment((15, 20)), targets["params"], targets["logits"])
    for images, labels, logits in batches.epoch(0):
        assert images.shape == (3, 3, 15, 20)
        for _image, label, teacher in zip(images, labels, logits):
            matches = (targets["logits"][label].float() - teacher).abs().sum(1) == 0
            assert matches.any()
