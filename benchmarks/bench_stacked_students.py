#!/usr/bin/env python3
"""Students of one architecture stacked into one network against the same students stepped one by one.

The question behind it (issue 25): should a cohort stack its students of one architecture on this device?
N students take one SGD step each on a shared batch (a cohort's students of one seed see the same batch):

- ``loop``: N forward passes, N backward passes, N optimizer steps (what the cohort does today);
- ``stacked``: the students' parameters and buffers stacked (``torch.func.stack_module_state``), one forward
  through ``torch.vmap`` of ``torch.func.functional_call`` (BatchNorm's running statistics are stacked buffers,
  updated per student), the N losses summed, one backward and one SGD step on the stacked tensors (SGD is
  elementwise: one optimizer over stacked tensors is N optimizers with the same settings).

Each in eager mode and under ``torch.compile`` (the mode ``--compile`` uses on the device: CUDA graphs on
CUDA). The loss here is cross-entropy: distillation losses differ per student and would be computed per slice
of the stacked logits either way. Before timing, both paths take the same steps from the same weights and the
largest weight difference is printed (the stacked convolutions round differently; it is not zero). Prints
ms per step (median of --repeats rounds of --steps steps) and the ratio loop / stacked per mode.

    python benchmarks/bench_stacked_students.py --students 4 --model resnet8x4 --batch-size 64
    python benchmarks/bench_stacked_students.py --device cuda --students 4 --steps 50 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from robustkd.models import build_model
from robustkd.train.compiled_step import allow_recompiles, compile_mode, compiled_optimizer_step
from robustkd.utils.device import resolve_device

Step = Callable[[torch.Tensor, torch.Tensor], None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimizer(parameters, compiled: bool) -> Callable[[], None]:
    optimizer = torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=5e-4)
    step = compiled_optimizer_step(optimizer) if compiled else optimizer.step

    def zero_and_step() -> None:
        step()
        optimizer.zero_grad(set_to_none=True)

    return zero_and_step


def loop_step(students: list[torch.nn.Module], compiled: bool, mode: str) -> Step:
    """One step of every student in turn."""
    updates = [_optimizer(student.parameters(), compiled) for student in students]
    losses = [torch.compile(lambda x, y, s=student: F.cross_entropy(s(x), y), mode=mode, dynamic=False)
              if compiled else (lambda x, y, s=student: F.cross_entropy(s(x), y)) for student in students]

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> None:
        for loss, update in zip(losses, updates):
            if mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            loss(inputs, labels).backward()
            update()

    return step


class StackedStudents:
    """N students of one architecture as stacked parameters and buffers and one vmapped forward."""

    def __init__(self, students: list[torch.nn.Module]) -> None:
        params, self.buffers = stack_module_state(students)
        self.params = {name: value.detach().requires_grad_() for name, value in params.items()}
        for tensor in [*self.params.values(), *self.buffers.values()]:
            # as a module's parameters and buffers are: CUDA graphs do not copy them in, and may update them in place
            torch._dynamo.mark_static_address(tensor)
        self.base = copy.deepcopy(students[0]).to("meta")

        def one(params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (params, buffers), (inputs,))

        self.forward = torch.vmap(one, in_dims=(0, 0, None))

    def unstacked(self, index: int, like: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {name: value[index].detach() for name, value in {**self.params, **self.buffers}.items()
                if name in like.state_dict()}


def stacked_step(stacked: StackedStudents, compiled: bool, mode: str) -> Step:
    update = _optimizer(list(stacked.params.values()), compiled)

    def summed_loss(params: dict, buffers: dict, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = stacked.forward(params, buffers, inputs)  # (N, B, C)
        return F.cross_entropy(logits.flatten(0, 1), labels.repeat(logits.shape[0]), reduction="sum") / len(labels)

    loss = torch.compile(summed_loss, mode=mode, dynamic=False) if compiled else summed_loss

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> None:
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        loss(stacked.params, stacked.buffers, inputs, labels).backward()
        update()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet8x4")
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    mode = compile_mode(device, graph_safe=True)
    allow_recompiles()  # each student in the loop is one more entry of the same compiled function
    torch.manual_seed(0)
    initial = [build_model(args.model, 100, (0.5,) * 3, (0.25,) * 3).to(device) for _ in range(args.students)]
    generator = torch.Generator(device=device).manual_seed(1)
    inputs = torch.rand(args.batch_size, 3, 32, 32, device=device, generator=generator)
    labels = torch.randint(0, 100, (args.batch_size,), device=device, generator=generator)
    print(f"{args.students} x {args.model}, batch {args.batch_size}; device {device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, compile mode {mode}, median of {args.repeats} rounds of {args.steps} steps")
    results: dict[str, dict[str, float]] = {}
    for variant in args.variants:
        compiled = variant == "compiled"
        students = [copy.deepcopy(model).train() for model in initial]
        stacked = StackedStudents([copy.deepcopy(model).train() for model in initial])
        paths = {"loop": loop_step(students, compiled, mode), "stacked": stacked_step(stacked, compiled, mode)}
        for path in paths.values():  # the same 3 steps from the same weights: compiles, and the check below
            for _ in range(3):
                path(inputs, labels)
        difference = max((stacked.unstacked(i, student)[name] - value).abs().max().item()
                         for i, student in enumerate(students) for name, value in student.state_dict().items()
                         if value.is_floating_point())
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, path in paths.items():
                _sync(device)
                started = time.perf_counter()
                for _ in range(args.steps):
                    path(inputs, labels)
                _sync(device)
                times[name].append((time.perf_counter() - started) / args.steps)
        medians = {name: statistics.median(values) for name, values in times.items()}
        results[variant] = {**{f"{name}_seconds": value for name, value in medians.items()},
                            "loop_over_stacked": medians["loop"] / medians["stacked"], "max_weight_difference": difference}
        print(f"  {variant:9s} loop {1e3 * medians['loop']:8.2f} ms/step  stacked {1e3 * medians['stacked']:8.2f} ms/step"
              f"  loop/stacked {medians['loop'] / medians['stacked']:5.2f}x  (max |weight difference| after 3 steps "
              f"{difference:.2e})")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "students": args.students, "batch_size": args.batch_size,
                                         "device": str(device), "torch": torch.__version__, "mode": mode,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
