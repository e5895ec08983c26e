"""The training step with its launch overhead compiled away (``--compile``): one student's forward and loss,
backward and optimizer step as a few large kernels instead of hundreds of small ones.

What is compiled, with ``torch.compile`` on static shapes (a training loader drops its last partial batch; a
batch of another shape would compile once more):

- the task's forward, its loss terms and their sum (AOTAutograd compiles the backward with it);
- the optimizer step (``torch.optim.SGD``'s foreach update fused by inductor); with ``--amp fp16`` the
  GradScaler steps the optimizer itself and that step stays eager.

Mode, per device: on CUDA ``reduce-overhead`` (inductor kernels replayed as CUDA graphs, PyTorch's cudagraph
trees) for a graph-safe step, ``default`` (inductor, no graphs) otherwise; on the CPU ``default``. A step is
not graph-safe when it draws random numbers (dropout in any form, drop-path; found by ``draws_random_numbers``
at the first step: each student's RNG state is swapped in on the host before its step, and that a replayed
graph honours the swap is not verified on a GPU) or when it runs
under DistributedDataParallel (whose gradient all-reduce runs in hooks between graphs). Graph breaks run
eagerly (torch.compile's behaviour); a compile error fails the run with torch's error.

Recompiles: dynamo keys a compiled function by its code, and every student shares that code, so each student
(its own optimizer, its own loss settings) and each first SGD step (no momentum buffers yet) is one more entry
of the same function. torch's default limit of 8 entries would silently send the 9th student of a cohort back
to eager mode; compiling raises it to ``RECOMPILE_LIMIT``. A value read from a Python object is a constant of
the graph: a new learning rate recompiles the SGD step (3 times in the paper recipe: a small graph), and DKD's
warm-up factor recompiles the student's forward and backward once per warm-up epoch (seen with
``TORCH_LOGS=recompiles``; 20 in the paper recipe); the compiled artefacts are reused after that.

Results equal the plain step's within float rounding (inductor fuses and reorders reductions): the tolerance
is stated and tested in tests/test_compiled_step.py; the plain step stays the default and keeps its CPU
bit-identity tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from robustkd.utils.seeding import capture_rng, restore_rng

RECOMPILE_LIMIT = 1024  # entries per compiled function (S students: about 5 S with the paper's milestones, plus
                        # 20 per DKD student)


def allow_recompiles() -> None:
    """Raise dynamo's per-function and accumulated recompile limits to at least ``RECOMPILE_LIMIT`` (process-wide)."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, RECOMPILE_LIMIT)


def draws_random_numbers(model: nn.Module, sample_inputs: torch.Tensor) -> bool:
    """True if a training-mode forward of ``model`` on ``sample_inputs`` draws from torch's RNG (dropout as a
    module or as ``F.dropout`` in a forward, attention dropout, drop-path, RReLU): judged by running a copy of the
    model once without gradients and comparing the RNG state of the CPU and of the inputs' CUDA device before and
    after. ``model`` itself, its BatchNorm statistics and the RNG state are left as they were."""
    probe = copy.deepcopy(model).train()
    device = sample_inputs.device
    before = capture_rng(device)
    try:
        with torch.no_grad():
            probe(sample_inputs)
        after = capture_rng(device)
    finally:
        restore_rng(before, device)
    return not all(first is None or torch.equal(first, second) for first, second in zip(before, after))


def compile_mode(device: torch.device, graph_safe: bool) -> str:
    """The torch.compile mode of a training step on ``device``: CUDA graphs only for a graph-safe step."""
    return "reduce-overhead" if device.type == "cuda" and graph_safe else "default"


def uses_cuda_graphs(mode: str) -> bool:
    return mode == "reduce-overhead"


def compiled_forward(forward: nn.Module, mode: str) -> Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor],
                                                                           torch.Tensor]]:
    """``forward(inputs, labels, **task_inputs) -> (logits, losses)`` compiled together with the sum of the loss
    terms; the compiled callable returns ``(logits, losses, loss)``. Call it under the step's autocast."""

    def forward_and_loss(inputs: torch.Tensor, labels: torch.Tensor, **task_inputs: torch.Tensor | None):
        logits, losses = forward(inputs, labels, **task_inputs)
        return logits, losses, sum(losses.values())

    allow_recompiles()
    return torch.compile(forward_and_loss, mode=mode, dynamic=False)


def compiled_optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """``optimizer.step()`` compiled (recompiled for each new learning rate). Not graphed: the step is a handful
    of fused foreach kernels already."""
    allow_recompiles()

    @torch.compile(mode="default", dynamic=False)
    def step() -> None:
        optimizer.step()

    return step


def compiled_inference(function: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                       ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A frozen model's ``function(inputs) -> outputs`` (no random draws) compiled for ``device``. Under CUDA
    graphs the output is copied out of the graph's memory, which the students' steps reuse."""
    mode = compile_mode(device, graph_safe=True)
    allow_recompiles()
    compiled = torch.compile(function, mode=mode, dynamic=False)
    if not uses_cuda_graphs(mode):
        return compiled

    def graphed(inputs: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(inputs).clone()

    return graphed
