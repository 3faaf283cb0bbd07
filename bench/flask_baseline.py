"""The baseline the served figures are compared against: the Flask app one writes first. One process, the dev
server, PIL and torchvision transforms, one image per forward pass, the same release weights.

``python -m bench.flask_baseline --weights model_store/skin_resnet34.pt --port 5000``
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch
from flask import Flask, jsonify, request
from PIL import Image
from torchvision import transforms

from bench.inprocess import ReleaseGate
from contract import answer
from handler.checkpoint import load_release
from imaging.framing import input_shape


def create_app(weights: Path) -> Flask:
    model, metadata = load_release(weights)
    size = input_shape(metadata["input_size"])
    frame = transforms.Compose([transforms.Resize(min(size)), transforms.CenterCrop(size),
                                transforms.PILToTensor()])
    normalize = transforms.Normalize(metadata["mean"], metadata["std"])
    gate = ReleaseGate.beside(weights)
    app = Flask(__name__)

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict():
        image = Image.open(io.BytesIO(request.files["file"].read())).convert("RGB")
        pixels = frame(image)
        with torch.inference_mode():
            logits = model(normalize(pixels.float() / 255).unsqueeze(0))
        probabilities = torch.softmax(logits[0] / float(metadata["temperature"]), dim=0).tolist()
        [distance] = gate.gate.distances(gate.network(gate.network.frame(image).unsqueeze(0))).tolist()
        # The answer the server gives, so that the benchmark's client checks both alike.
        return jsonify(answer.prediction(metadata["name"], metadata["version"], probabilities,
                                         metadata["referral"]["threshold"],
                                         gate.gate.check(pixels, image.size, distance).as_dict()))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Minimal Flask baseline for the benchmark.")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    create_app(args.weights).run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
