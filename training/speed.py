"""Training speed on the machine at hand: train-step img/s of the student in each CPU precision,
beside data-only img/s of the batch path (cache gather and augmentation), at several input sizes;
the teacher's at its size, all of it trained and with its early blocks frozen; and the ms of one
AdamW step over the student's weights, torch's default against fused.
Run it on a quiet CPU; it prints figures and asserts nothing.

    python -m training.speed --sizes 112 96x128 150x200
"""
from __future__ import annotations

import argparse
import time

import torch

import settings
from handler.cpus import cpu_info
from training.mixed_precision import Precision, cpu_candidates, time_train_steps
from training.models import DEFAULT_TEACHER, TEACHER_FROZEN_BLOCKS, build_student, build_teacher
from training.presets import BatchAugment, ImageBatches, train_cache_shape
from training.run_setup import image_size


def data_images_per_second(size: tuple[int, int], batch_size: int, batches: int = 20) -> float:
    """img/s of the training batch path alone, on a random uint8 cache of the training shape."""
    cache = torch.randint(0, 256, (batch_size * batches, 3, *train_cache_shape(size)), dtype=torch.uint8)
    sampler = torch.utils.data.RandomSampler(cache, generator=torch.Generator().manual_seed(0))
    loader = ImageBatches(cache, torch.zeros(len(cache), dtype=torch.long), batch_size, sampler,
                          BatchAugment(size))
    started = time.perf_counter()
    for _ in loader:
        pass
    return len(cache) / (time.perf_counter() - started)


def optimizer_step_ms(fused: bool, steps: int = 5) -> float:
    """ms of one AdamW step over the student's parameters (the same whatever the input size)."""
    model = build_student()
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer = torch.optim.AdamW(model.parameters(), fused=fused)
    optimizer.step()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - started) / steps * 1000


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=image_size, nargs="+", default=[(112, 112), (96, 128), (150, 200)])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    cpu, candidates = cpu_info(), cpu_candidates()
    print(f"CPU {cpu['model']}, {torch.get_num_threads()} torch threads, flags: {' '.join(cpu['flags']) or 'none'}")
    print("| input | batch | " + " | ".join(f"train {name} img/s" for name in candidates) + " | data alone img/s |")
    print("|---|---:|" + "---:|" * (len(candidates) + 1))
    rows = []
    for size in args.sizes:
        shape = (args.batch_size, 3, *size)
        train = {name: time_train_steps(Precision(name, torch.device("cpu")), build_student(), shape, args.steps)
                 for name in candidates}
        data = data_images_per_second(size, args.batch_size)
        rows.append({"input": list(size), "batch_size": args.batch_size, "train": train, "data": data})
        print(f"| {size[0]}x{size[1]} | {args.batch_size} | "
              + " | ".join(f"{train[name]:.1f}" for name in candidates) + f" | {data:.0f} |", flush=True)
    shape = (args.batch_size, 3, *settings.TEACHER_SIZE)
    print(f"| {DEFAULT_TEACHER}, {shape[2]}x{shape[3]}, frozen blocks | "
          + " | ".join(f"train {name} img/s" for name in candidates) + " |")
    print("|---|" + "---:|" * len(candidates))
    for frozen in (0, TEACHER_FROZEN_BLOCKS):
        teacher = {name: time_train_steps(Precision(name, torch.device("cpu")),
                                          build_teacher(DEFAULT_TEACHER, frozen), shape, args.steps)
                   for name in candidates}
        print(f"| {frozen} | " + " | ".join(f"{teacher[name]:.1f}" for name in candidates) + " |", flush=True)
    print(f"AdamW step over the student's weights: default {optimizer_step_ms(False, args.steps):.1f} ms, "
          f"fused {optimizer_step_ms(True, args.steps):.1f} ms")
    return rows


if __name__ == "__main__":
    main()
