"""``POST /explanations/skin``: Grad-CAM heatmaps from a real TorchServe and from the handler loaded
as TorchServe loads it, and, with the shipped trained weights, heatmaps that sit on the lesion.

The session's release has random weights, which is enough for shapes, ranges, the requested class,
errors and batching; where the heatmap must mean something, the shipped release is served.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from torch.nn import functional as F

import settings
from contract.checks import check_prediction
from contract.classes import CODES
from handler.checkpoint import METADATA_FILE, load_release
from handler.gradcam import heatmap_shape
from handler.preprocessing import eval_transform, model_input
from imaging.decode import decode_image
from imaging.framing import input_shape
from serve.torchserve import TorchServe
from tests.conftest import TEST_INPUT_SIZE, write_random_release
from tests.test_handler import load_service, run_batch
from tools.archive import build_archive


def explanations_url(server: TorchServe, model: str = "skin") -> str:
    return f"{server.url('inference')}/explanations/{model}"


def explain(server: TorchServe, image: bytes, target: str | None = None,
            model: str = "skin") -> requests.Response:
    """The class goes in a form field: TorchServe 0.12 hands query parameters to no handler."""
    url = explanations_url(server, model)
    if target is None:
        return requests.post(url, data=image, headers=server.headers(), timeout=120)
    return requests.post(url, files={"data": ("lesion.jpg", image, "image/jpeg")},
                         data={"target": target}, headers=server.headers(), timeout=120)


def predict(server: TorchServe, image: bytes) -> dict:
    answer = requests.post(f"{server.url('inference')}/predictions/skin", data=image,
                           headers=server.headers(), timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def heatmap(body: dict) -> torch.Tensor:
    return torch.tensor(body["heatmap"])


def test_the_heatmap_covers_the_frame_at_its_aspect_with_values_on_0_1(torchserve, fixture_images):
    assert heatmap_shape(TEST_INPUT_SIZE) == (9, 12)  # 72 x 96 px at 1/8
    for name in ("MEL_ISIC_0024310.jpg", "VASC_ISIC_0024370.jpg"):
        image = fixture_images[name]
        answer = explain(torchserve, image)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["frame"] == {"height": TEST_INPUT_SIZE[0], "width": TEST_INPUT_SIZE[1]}
        values = heatmap(body)
        assert values.shape == (9, 12)
        assert values.min() >= 0 and values.max() == 1
        assert values.std() > 0.05  # a map, not a constant
        top = predict(torchserve, image)["predictions"][0]
        assert body["class"]["code"] == top["code"] and body["class"]["requested"] is False
        assert body["class"]["probability"] == pytest.approx(top["probability"], abs=1e-4)


def test_a_requested_class_is_explained_from_a_form_field_or_json(torchserve, fixture_images):
    image = fixture_images["NV_ISIC_0024306.jpg"]
    ranked = {p["code"]: p["probability"] for p in predict(torchserve, image)["predictions"]}
    top = max(ranked, key=ranked.get)
    other = next(code for code in CODES if code != top)
    by_form = explain(torchserve, image, target=other.lower())
    by_json = requests.post(explanations_url(torchserve), headers=torchserve.headers(), timeout=120,
                            json={"data": base64.b64encode(image).decode(), "target": other})
    for answer in (by_form, by_json):
        assert answer.status_code == 200, answer.text
        explained = answer.json()["class"]
        assert (explained["code"], explained["requested"]) == (other, True)
        assert explained["probability"] == pytest.approx(ranked[other], abs=1e-4)
    assert heatmap(by_form.json()).tolist() == heatmap(by_json.json()).tolist()
    assert heatmap(by_form.json()).tolist() != heatmap(explain(torchserve, image).json()).tolist()


def test_an_unknown_class_code_is_a_clear_400(torchserve, fixture_images):
    answer = explain(torchserve, fixture_images["DF_ISIC_0024318.jpg"], target="MELANOMA")
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "unknown_class" and "'MELANOMA'" in body["detail"]
    assert all(code in body["detail"] for code in CODES)


def test_a_non_image_is_a_400_with_the_reason(torchserve):
    answer = explain(torchserve, b"%PDF-1.7 not a photo")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_image" and "not an image" in answer.json()["detail"]


# The handler in-process, as a TorchServe worker loads it, to build batches TorchServe would.

@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_random_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def service(release, tmp_path_factory):
    archive = build_archive(weights=release, export_path=tmp_path_factory.mktemp("store"))
    return load_service(archive, tmp_path_factory.mktemp("unpacked"))


def handle(service, requests_: list[tuple[bytes, bool, str | None]]) -> tuple[list[dict], list[int]]:
    """One batch of (image, asks to explain, target) as TorchServe's frontend sends it: the
    explanations endpoint sets the ``explain`` header of its own requests only."""
    batch = []
    for i, (body, explains, target) in enumerate(requests_):
        parameters = [{"name": "data", "contentType": "image/jpeg", "value": body}]
        if target is not None:
            parameters.append({"name": "target", "contentType": "", "value": target.encode()})
        headers = [{"name": b"explain", "value": b"True"}] if explains else []
        batch.append({"requestId": f"r{i}".encode(), "parameters": parameters, "headers": headers})
    return run_batch(service, batch)


def test_the_heatmap_is_the_releases_class_activation_map(service, release, fixture_images):
    """After ResNet's global average pooling and one linear layer, Grad-CAM on layer4 equals the
    class activation map (Zhou et al. 2016): the class's fc weights over layer4's channels. Computed
    here from the release without gradients or hooks, it must be what the handler serves."""
    model, metadata = load_release(release)
    images = list(fixture_images.values())[:4]
    targets = [None, "MEL", None, "VASC"]
    responses, statuses = handle(service, [(image, True, target) for image, target in zip(images, targets)])
    assert statuses == [200] * 4
    frames = torch.stack([eval_transform(decode_image(image), metadata["input_size"]) for image in images])
    with torch.inference_mode():
        trunk = torch.nn.Sequential(*list(model.children())[:-2])
        activations = trunk(model_input(frames, colour_constancy=True))
        logits = model(model_input(frames, colour_constancy=True))
    for i, (response, target) in enumerate(zip(responses, targets)):
        explained = logits[i].argmax().item() if target is None else CODES.index(target)
        assert response["class"]["code"] == CODES[explained]
        cam = F.relu(torch.einsum("k,khw->hw", model.fc.weight[explained].detach(), activations[i]))
        cam = F.interpolate(cam[None, None], size=heatmap_shape(TEST_INPUT_SIZE), mode="bilinear",
                            align_corners=False)[0, 0]
        assert torch.allclose(heatmap(response), cam / cam.max(), rtol=0, atol=2e-3)


def test_explanations_batched_with_predictions_each_get_their_own_answer(service, fixture_images):
    """TorchServe reads the explain flag from the first request of a batch only, yet batches both
    endpoints' requests together: each must still get the answer of its own endpoint."""
    good = [fixture_images[name] for name in ("AK_ISIC_0024468.jpg", "BKL_ISIC_0024312.jpg",
                                              "SCC_ISIC_0024329.jpg")]
    alone, _ = handle(service, [(image, False, None) for image in good])
    responses, statuses = handle(service, [
        (good[0], False, None), (good[1], True, "BCC"), (b"not an image", True, None),
        (good[2], False, None), (good[0], True, "XYZ"), (b"", False, None)])
    assert statuses == [200, 200, 400, 200, 400, 400]
    for got, expected in ((responses[0], alone[0]), (responses[3], alone[2])):
        check_prediction(got)
        assert got["predictions"] == expected["predictions"]
    assert responses[1]["class"]["code"] == "BCC" and heatmap(responses[1]).shape == (9, 12)
    assert responses[2]["error"] == "invalid_image"
    assert responses[4]["error"] == "unknown_class"
    assert responses[5]["error"] == "invalid_image" and "empty" in responses[5]["detail"]


# The shipped release: trained weights, through their own archive and TorchServe.

SHIPPED = json.loads((settings.MODEL_STORE / METADATA_FILE).read_text(encoding="utf-8"))
# A centred box with half the frame's area: a heatmap that ignored the photo would put half its
# mass there.
CENTRE_SIDE = 2 ** -0.5


def central_share(values: torch.Tensor, side: float = CENTRE_SIDE) -> float:
    """The share of the heatmap's mass in the centred box whose sides are ``side`` of the frame's,
    counting each cell by the part of it inside the box."""
    def overlap(cells: int) -> torch.Tensor:
        edges = torch.arange(cells + 1) / cells
        low, high = (1 - side) / 2, (1 + side) / 2
        return (edges[1:].clamp(low, high) - edges[:-1].clamp(low, high)) * cells

    rows, columns = values.shape
    if not values.any():
        return 0.0  # a map with no positive evidence for the class puts nothing on the lesion
    return float((values * overlap(rows)[:, None] * overlap(columns)[None]).sum() / values.sum())


def test_central_share_weighs_cells_by_their_part_in_the_box():
    assert central_share(torch.ones(12, 16)) == pytest.approx(0.5)
    centre = torch.zeros(12, 16)
    centre[4:8, 5:11] = 1
    assert central_share(centre) == pytest.approx(1)
    assert central_share(1 - centre) == pytest.approx((0.5 * 192 - 24) / (192 - 24))


def test_the_trained_heatmap_lies_mostly_on_the_centred_lesion(shipped_server, fixture_images):
    """HAM10000 photos centre the lesion, so a heatmap that follows it puts most of its mass in the
    centred box of half the frame's area, where one that ignored the photo would put half. An
    untrained ResNet34 already puts a little more than half there (zero padding dims the borders),
    so the trained release must also beat that network, on the same photos and frames."""
    shares = {}
    for model in ("skin", "untrained"):
        for name, image in fixture_images.items():
            answer = explain(shipped_server, image, model=model)
            assert answer.status_code == 200, answer.text
            values = heatmap(answer.json())
            assert values.shape == heatmap_shape(input_shape(SHIPPED["input_size"]))
            shares[model, name] = central_share(values)
    trained, untrained = ([shares[model, name] for name in fixture_images] for model in ("skin", "untrained"))
    print(f"\ncentral share of the heatmap, release {SHIPPED['version']}: "
          + ", ".join(f"{name.split('_')[0]} {share:.2f}" for name, share in zip(fixture_images, trained))
          + f"; mean {np.mean(trained):.3f}, untrained {np.mean(untrained):.3f}")
    assert np.mean(trained) > 0.5
    assert np.mean(trained) > np.mean(untrained)
