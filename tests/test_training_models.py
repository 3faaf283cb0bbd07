from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet34

from contract.classes import NUM_CLASSES
from training.models import TEACHERS, build_student, build_teacher


def test_init_loads_a_local_torchvision_resnet34_without_its_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    imagenet = resnet34()  # random weights stand in for the ImageNet file; nothing is downloaded
    path = tmp_path / "resnet34.pth"
    torch.save(imagenet.state_dict(), path)
    student = build_student(path)
    assert torch.equal(student.conv1.weight, imagenet.conv1.weight)
    assert student.fc.out_features == NUM_CLASSES


def test_init_rejects_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ValueError):
        build_student(path)


@pytest.mark.parametrize("arch", sorted(TEACHERS))
def test_teacher_has_pretrained_features_and_an_eight_way_head(arch: str) -> None:
    teacher = build_teacher(arch).eval()
    with torch.no_grad():
        assert teacher(torch.zeros(1, 3, 64, 64)).shape == (1, NUM_CLASSES)


def test_a_teacher_step_leaves_its_frozen_blocks_as_imagenet_made_them() -> None:
    teacher = build_teacher("efficientnet-lite0", frozen_blocks=2).train()
    before = {name: value.clone() for name, value in teacher.named_parameters()}
    optimizer = torch.optim.SGD([p for p in teacher.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(teacher(torch.randn(2, 3, 64, 64)), torch.tensor([0, 1])).backward()
    optimizer.step()
    changed = {name for name, value in teacher.named_parameters() if not torch.equal(value, before[name])}
    frozen = ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.")
    assert changed and not any(name.startswith(frozen) for name in changed)
    assert any(name.startswith("_blocks.2.") for name in changed)
