"""``python -m ops``: list, describe, scale, register, switch and unregister models on a running
TorchServe, and summarise its metrics. Human-readable by default, ``--json`` for scripts; every
failure is one line on stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import settings
from api.keys import KeySource
from api.management import ManagementClient
from api.problems import ServerProblem
from ops.metrics import scrape, summarize
from ops.names import archive_name, model_name
from ops.render import render_describe, render_metrics, render_models


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__.splitlines()[0])
    parser.add_argument("--key-file", type=Path, default=settings.KEY_FILE,
                        help="TorchServe's key_file.json (default: %(default)s, from make serve)")
    parser.add_argument("--management-url", default=settings.MANAGEMENT_URL)
    parser.add_argument("--metrics-url", default=settings.METRICS_URL)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("models", help="list registered models")
    describe = commands.add_parser("describe", help="versions, workers, memory and queue of a model")
    describe.add_argument("name")
    scale = commands.add_parser("scale", help="set a model's worker range and wait for it")
    scale.add_argument("name")
    scale.add_argument("--min", dest="min_workers", type=int, required=True)
    scale.add_argument("--max", dest="max_workers", type=int, required=True)
    scale.add_argument("--version", help="a version other than the default")
    register = commands.add_parser(
        "register", help="register a new version built from a release in the model store")
    register.add_argument("--weights", type=Path, help="release weights, the .json metadata "
                          "beside them (default: model_store/skin_resnet34.pt)")
    register.add_argument("--model-store", type=Path, help="the server's model store, where "
                          "<name>-<version>.mar is written (default: model_store)")
    register.add_argument("--archive", help="register this .mar from the model store as it is")
    register.add_argument("--name", default="skin")
    register.add_argument("--batch-size", type=int,
                          help="default: batchSize of handler/model-config.yaml")
    register.add_argument("--max-batch-delay", type=int, help="milliseconds to wait for a batch "
                          "to fill (default: maxBatchDelay of handler/model-config.yaml)")
    register.add_argument("--workers", type=int,
                          help="default: minWorkers of handler/model-config.yaml")
    set_default = commands.add_parser("set-default", help="route /predictions/NAME to VERSION")
    set_default.add_argument("name")
    set_default.add_argument("version")
    unregister = commands.add_parser("unregister", help="remove one version of a model")
    unregister.add_argument("name")
    unregister.add_argument("version")
    commands.add_parser("metrics", help="requests, latencies and handler metrics from :8082")
    return parser


def run(args: argparse.Namespace) -> tuple[object, str]:
    """Carry out one command; returns its JSON-able result and its text rendering."""
    api = ManagementClient(args.management_url, KeySource(args.key_file, "management"))
    if args.command == "models":
        models = api.models()
        return models, render_models(models)
    if args.command == "describe":
        versions = api.describe(args.name)
        return versions, render_describe(versions)
    if args.command == "scale":
        status = api.scale(args.name, args.min_workers, args.max_workers, args.version)
        versions = api.describe(args.name)
        return {"status": status, "versions": versions}, f"{status}\n{render_describe(versions)}"
    if args.command == "register":
        return register(api, args)
    if args.command == "set-default":
        status = api.set_default(args.name, args.version)
        return {"status": status}, status
    if args.command == "unregister":
        status = api.unregister(args.name, args.version)
        return {"status": status}, status
    summary = summarize(*scrape(args.metrics_url))
    return summary, render_metrics(summary)


def register(api: ManagementClient, args: argparse.Namespace) -> tuple[dict, str]:
    # The release code imports torch (3 s); only this command needs it.
    from ops.release import shipped_batching, versioned_archive

    name = model_name(args.name)
    archive = None if args.archive is None else archive_name(args.archive)
    shipped = shipped_batching()
    if archive is None:
        weights = args.weights or settings.WEIGHTS
        try:
            archive = versioned_archive(weights, args.model_store or settings.MODEL_STORE,
                                        name)[0].name
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"cannot build an archive from {weights}: {exc}") from None
        except subprocess.CalledProcessError as exc:
            raise ValueError(f"torch-model-archiver failed with exit status {exc.returncode}") from None
    status = api.register(archive, pick(args.batch_size, shipped["batchSize"]),
                          pick(args.max_batch_delay, shipped["maxBatchDelay"]),
                          pick(args.workers, shipped["minWorkers"]), name)
    return {"status": status, "archive": archive}, f"{status} (from {archive})"


def pick(given: int | None, default: int) -> int:
    return default if given is None else given


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        result, text = run(args)
    except (ServerProblem, ValueError) as exc:
        print(f"ops: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else text)
