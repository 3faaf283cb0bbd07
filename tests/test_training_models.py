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
