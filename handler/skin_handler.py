"""TorchServe handler for SKIN: one photo in, all eight lesion classes out, ranked by probability.

The request path reads top to bottom: ``preprocess`` turns each request into the frames both networks
see or a per-request error, ``inference`` runs the good images as one batch through the task network
and the release's gate (handler/gate.py), ``postprocess`` ranks the classes beside the gate's verdict and
answers the bad requests with HTTP 400 without failing the rest of the batch. Requests to
``/explanations/skin`` take ``explain_handle`` instead, which answers each with a Grad-CAM heatmap.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from ts.context import Context
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from contract import answer
from contract.classes import CLASSES
from handler.batch import Batch, request_bytes
from handler.checkpoint import METADATA_FILE, load_metadata, load_release
from handler.cpus import available_cores
from handler.explanation import UnknownClassError, requested_class
from handler.gate import GATE_FILE, GATE_NETWORK_FILE, Gate, GateNetwork, Verdict, gate_error, load_gate_state
from handler.gradcam import grad_cam
from handler.kservev2_envelope import take_over as take_over_kservev2_envelope
from handler.preprocessing import eval_transform, model_input, serves_dihedral_tta
from handler.runners import CALIBRATION_FILE, INT8_QCONFIGS, runner
from handler.served_precision import load_calibration, read_served
from imaging.decode import InvalidImageError, decode_image
from imaging.framing import input_shape

logger = logging.getLogger(__name__)


class SkinHandler(BaseHandler):
    def initialize(self, context: Context) -> None:
        super().initialize(context)
        take_over_kservev2_envelope()
        model_dir = Path(context.system_properties["model_dir"])
        self.metadata = load_metadata(model_dir / METADATA_FILE)
        self.input_size = input_shape(self.metadata["input_size"])
        self.colour_constancy = bool(self.metadata.get("colour_constancy"))
        self.mean, self.std = tuple(self.metadata["mean"]), tuple(self.metadata["std"])
        self.temperature = float(self.metadata["temperature"])
        self.referral_threshold = float(self.metadata["referral"]["threshold"])
        # The gate file must have been fitted on exactly the weights in this archive, and with
        # exactly the ImageNet weights beside it.
        weights = model_dir / context.manifest["model"]["serializedFile"]
        gate_state = load_gate_state(model_dir / GATE_FILE, weights)
        self.gate = Gate.from_state(gate_state)
        self.gate_network = GateNetwork.from_state(gate_state, model_dir / GATE_NETWORK_FILE)
        self.model_name = context.manifest["model"]["modelName"]
        self.model_version = context.manifest["model"].get("modelVersion", self.metadata["version"])
        config = (getattr(self, "model_yaml_config", None) or {})
        if self.device.type == "cpu":
            torch.set_num_threads(self._cpu_threads(config))
        # Workers x threads = cores, so a worker's lone photo leaves a core that no thread of its own
        # uses; the gate's network and its distances run there, beside the task network.
        self.gate_beside = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate")
                            if self.device.type == "cpu" and torch.get_num_threads() < available_cores() else None)
        # self.model stays float for Grad-CAM's gradients; answers come from the served precision.
        self.served = read_served(model_dir)
        calibration = (load_calibration(model_dir / CALIBRATION_FILE,
                                        gate_state["release"]["weights_sha256"])
                       if self.served["precision"] in INT8_QCONFIGS and self.device.type == "cpu" else None)
        self.runner = runner(self.model, self.served["precision"], self.input_size, calibration,
                             self.device, serves_dihedral_tta(self.metadata))
        logger.info("SKIN %s v%s on %s at %s (%s), %d torch threads, input %dx%d px, colour "
                    "constancy %s, T=%.3f, referral threshold %.3f", self.model_name,
                    self.model_version, self.device, self.runner.precision, self.served["source"],
                    torch.get_num_threads(), *self.input_size, self.colour_constancy,
                    self.temperature, self.referral_threshold)

    def _load_pickled_model(self, model_dir: str, model_file: str, model_pt_path: str) -> torch.nn.Module:
        # BaseHandler's torch.load leaves weights_only to torch's default, which an older torch or
        # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns off: a release file may hold tensors and nothing else.
        return load_release(Path(model_pt_path))[0]

    @staticmethod
    def _cpu_threads(config: dict) -> int:
        """Threads per worker such that workers x threads <= cores; more only oversubscribes."""
        configured = config.get("handler", {}).get("threads_per_worker")
        if configured:
            return int(configured)
        cores = available_cores()
        return max(1, cores // int(config.get("maxWorkers", 1)))

    def preprocess(self, data: list[dict]) -> Batch:
        batch = Batch(size=len(data))
        tensors, gate_frames = [], []
        decoding = framing = 0.0
        for idx, row in enumerate(data):
            # Every step of one request stays inside its try: one hostile image fails alone.
            try:
                started = time.perf_counter()
                image = decode_image(request_bytes(row), draft_size=max(*self.input_size,
                                                                        *self.gate_network.input_size))
                decoded = time.perf_counter()
                frame = eval_transform(image, self.input_size)
                gate_frame = self.gate_network.frame(image)
                decoding += decoded - started
                framing += time.perf_counter() - decoded
            except InvalidImageError as exc:
                batch.errors[idx] = str(exc)
                continue
            except Exception as exc:  # Pillow raises many types on hostile files; answer 400, not 503
                logger.warning("request %d: undecodable image: %r", idx, exc)
                batch.errors[idx] = f"the image could not be decoded: {exc}"
                continue
            tensors.append(frame)
            gate_frames.append(gate_frame)
            batch.positions.append(idx)
            batch.sizes.append(image.size)
        if tensors:
            batch.images = torch.stack(tensors)
            batch.gate_frames = torch.stack(gate_frames)
        self._gauge("SkinDecodeMs", decoding * 1000, "ms")
        self._gauge("SkinFrameMs", framing * 1000, "ms")
        return batch

    def inference(self, batch: Batch) -> Batch:
        if batch.images is None:
            return batch
        beside = (self.gate_beside.submit(self.gate_distances, batch.gate_frames)
                  if self.gate_beside and len(batch.positions) == 1 else None)
        started = time.perf_counter()
        images = model_input(batch.images.to(self.device, non_blocking=True), self.colour_constancy,
                             self.mean, self.std)
        _, logits = self.runner(images)
        batch.probabilities = torch.softmax(logits / self.temperature, dim=1).cpu()
        self._gauge("SkinForwardMs", (time.perf_counter() - started) * 1000, "ms")
        batch.verdicts = self.gate_verdicts(batch, beside)
        self._gauge("SkinBatchSize", len(batch.positions), "count")
        self.context.metrics.add_counter("SkinImagesHandled", len(batch.positions))
        # Images / batches over any interval is the mean batch size, which one gauge cannot show.
        self.context.metrics.add_counter("SkinBatchesRun", 1)
        return batch

    def gate_distances(self, frames: torch.Tensor) -> torch.Tensor:
        """Each frame's distance to the gate's lesion bank, through the gate network. It runs on
        the CPU in fp32 whatever the task network runs at: it is small, and its bank was measured
        so."""
        return self.gate.distances(self.gate_network(frames))

    def gate_verdicts(self, batch: Batch, beside: Future | None = None) -> list[Verdict]:
        """The gate's verdict on each good image; one that cannot be checked is refused alone.
        ``beside``: the batch's ``gate_distances``, where they already run beside the task
        network."""
        started = time.perf_counter()
        try:
            distances = (beside.result() if beside else self.gate_distances(batch.gate_frames)).tolist()
        except Exception:  # the batch keeps its answers; each is refused as unchecked
            logger.exception("the gate network failed on a batch of %d images", len(batch.positions))
            distances = None
        checks_started = time.perf_counter()
        verdicts = []
        for row, idx in enumerate(batch.positions):
            try:
                verdict = (gate_error() if distances is None else
                           self.gate.check(batch.images[row], batch.sizes[row], distances[row]))
            except Exception:  # one odd image must not cost the rest of the batch their answers
                logger.exception("request %d: the gate could not check the image", idx)
                verdict = gate_error()
            verdicts.append(verdict)
            if verdict.accepted:
                self.context.metrics.add_counter("SkinGateAccepted", 1, dimensions=[])
            else:
                self.context.metrics.add_counter("SkinGateRefused", 1,
                                                 dimensions=[Dimension("Reason", verdict.reason)])
        self._gauge("SkinGateNetworkMs", (checks_started - started) * 1000, "ms")
        self._gauge("SkinGateChecksMs", (time.perf_counter() - checks_started) * 1000, "ms")
        return verdicts

    def postprocess(self, batch: Batch) -> list[dict]:
        started = time.perf_counter()
        responses: list[dict] = [{} for _ in range(batch.size)]
        for idx, message in batch.errors.items():
            responses[idx] = self._rejected(idx, answer.INVALID_IMAGE, message)
        if batch.errors:
            self.context.metrics.add_counter("SkinImagesRejected", len(batch.errors))
        for row, idx in enumerate(batch.positions):
            responses[idx] = answer.prediction(self.model_name, self.model_version,
                                               batch.probabilities[row].tolist(),
                                               self.referral_threshold, batch.verdicts[row].as_dict())
        self._gauge("SkinAnswerMs", (time.perf_counter() - started) * 1000, "ms")
        return responses

    def describe_handle(self) -> dict:
        """The body of ``GET /models/skin?customized=true``."""
        return {
            "model": self.model_name,
            "version": self.model_version,
            "arch": self.metadata["arch"],
            "input_size": list(self.input_size),
            "colour_constancy": self.metadata.get("colour_constancy"),
            "referral": self.metadata["referral"],
            "mean": self.metadata["mean"],
            "std": self.metadata["std"],
            "temperature": self.temperature,
            "device": str(self.device),
            "precision": self.runner.precision,
            "precision_choice": self.served,
            "dihedral_tta": self.runner.dihedral,
            "gate": {"max_distance": self.gate.max_distance, "k": self.gate.k,
                     "bank_lesions": len(self.gate.bank),
                     "network_input_size": list(self.gate_network.input_size),
                     "network_beside_task_network": self.gate_beside is not None},
            "torch_threads": torch.get_num_threads(),
            "classes": [answer.lesion(lesion) for lesion in CLASSES],
            "metrics": self.metadata.get("metrics", {}),
            "data": self.metadata.get("data", {}),
        }

    def _is_explain(self) -> bool:
        # TorchServe reads the flag from request 0 alone, yet it batches /explanations requests
        # with /predictions ones: any request asking sends the batch to explain_handle.
        return any(self._wants_explanation(idx) for idx in range(len(self.context.request_processor)))

    def _wants_explanation(self, idx: int) -> bool:
        return self.context.get_request_header(idx, "explain") == "True"

    def explain_handle(self, batch: Batch, raw_data: list[dict]) -> list[dict]:
        """A heatmap for each /explanations request of the batch, the ranking for each other one."""
        wanted = {idx for idx in range(batch.size) if self._wants_explanation(idx)}
        responses = self.postprocess(self.inference(batch.select(lambda idx: idx not in wanted)))
        targets: dict[int, int | None] = {}
        for idx in sorted(wanted):
            try:
                targets[idx] = requested_class(raw_data[idx])
            except UnknownClassError as exc:
                responses[idx] = self._rejected(idx, answer.UNKNOWN_CLASS, str(exc))
        explained = batch.select(targets.__contains__)
        for idx, message in explained.errors.items():
            responses[idx] = self._rejected(idx, answer.INVALID_IMAGE, message)
        if explained.errors:
            self.context.metrics.add_counter("SkinImagesRejected", len(explained.errors))
        if explained.images is not None:
            insights = self.get_insights(explained.images, [targets[idx] for idx in explained.positions])
            for idx, insight in zip(explained.positions, insights):
                responses[idx] = insight
        return responses

    def get_insights(self, frames: torch.Tensor, targets: list[int | None]) -> list[dict]:
        """Grad-CAM on the last residual stage for uint8 frames; a target of None explains the top
        class. Full precision, since gradients through fp16 autocast lose the small ones."""
        started = time.perf_counter()
        images = model_input(frames.to(self.device), self.colour_constancy, self.mean, self.std)
        cam = grad_cam(self.model, self.model.layer4, images, targets)
        probabilities = torch.softmax(cam.logits / self.temperature, dim=1)
        self._gauge("SkinExplainMs", (time.perf_counter() - started) * 1000, "ms")
        return [answer.explanation(self.model_name, self.model_version, self.input_size, heatmap.tolist(),
                                   int(chosen), float(row[chosen]), requested=target is not None)
                for heatmap, chosen, row, target in zip(cam.heatmaps, cam.classes, probabilities, targets)]

    def _rejected(self, idx: int, error: str, message: str) -> dict:
        self.context.set_response_status(400, message, idx)
        return answer.error(error, message)

    def _gauge(self, name: str, value: float, unit: str) -> None:
        self.context.metrics.add_metric(name, round(value, 3), unit, metric_type=MetricTypes.GAUGE)
