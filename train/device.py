"""Where training and curvature run: choosing the torch device, making CUDA reruns repeatable, moving
batches, and recording the device and library versions in a run's metrics.

``compute.device`` is ``auto`` (a GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
On the CPU the choice changes nothing: the same kernels run in the same order. A CPU run repeats bit for
bit given its torch thread count, which params fix (``compute.threads_per_worker``, pipelines/matrix.py):
float reductions are split by thread, and no op of the models adds with atomics (GroupConv's gather).

On a GPU a few kernels are non-deterministic by default: cuBLAS reductions with several workspaces,
cuDNN's autotuned convolution algorithms (``cudnn.benchmark``) and non-deterministic cuDNN backward
kernels, and atomic-add based ops (``index_add_``, ``scatter_add_``, the backward of ``interpolate``
and of advanced indexing). :func:`make_deterministic` sets the documented switches so that a rerun on the
same GPU, driver and library versions gives the same numbers; ops with no deterministic CUDA kernel
only warn (``warn_only=True``), so a run never fails on them.

It also makes float32 mean IEEE float32 on the GPU. torch lets cuDNN convolutions run in TF32 by default
(``torch.backends.cudnn.conv.fp32_precision == "tf32"``: a 10-bit mantissa, relative errors near 1e-3),
which would put the GPU's losses, gradients and Hessian-vector products three orders of magnitude away
from the CPU's and blur the small Hessian eigenvalues the landscape stage measures. With IEEE float32,
results differ between CPU and GPU (other kernels, other summation order) and between GPU models only in
the last digits.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import re
from importlib import metadata
from typing import Any

import numpy as np
import torch

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
CUBLAS_WORKSPACE = ":4096:8"  # one of the two settings cuBLAS documents as deterministic


def resolve_device(spec: str) -> torch.device:
    """The device ``compute.device`` names; a clear error when it names a GPU that is not visible."""
    if not isinstance(spec, str) or not re.fullmatch(DEVICE_PATTERN, spec):
        raise ValueError(f"compute.device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"compute.device is {spec!r} but torch sees no GPU (torch {torch.__version__}, CUDA build: "
                f"{torch.version.cuda or 'none'}); install the CUDA build of torch (docs/gpu.md) or set "
                "compute.device: auto or cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RuntimeError(f"compute.device is {spec!r} but only {count} GPU(s) are visible (cuda:0..)")
    return device


def make_deterministic() -> dict[str, Any]:
    """Set the switches that make CUDA reruns repeatable and float32 IEEE float32; returns what they were,
    for :func:`restore`.

    Call it before the first CUDA operation (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts)."""
    before = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
        "matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
    }
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    # the new precision API only: once it is used, torch raises on reading the legacy allow_tf32 flags
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return before


def restore(before: dict[str, Any]) -> None:
    """Undo :func:`make_deterministic` (tests; a stage process simply exits)."""
    torch.use_deterministic_algorithms(before["deterministic_algorithms"], warn_only=before["warn_only"])
    torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = before["cudnn_deterministic"]
    torch.backends.cudnn.conv.fp32_precision = before["conv_fp32_precision"]
    torch.backends.cuda.matmul.fp32_precision = before["matmul_fp32_precision"]
    if before["cublas_workspace_config"] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = before["cublas_workspace_config"]


def prepare(spec: str) -> torch.device:
    """Stage start: resolve ``compute.device`` and, on a GPU, switch to deterministic kernels."""
    device = resolve_device(spec)
    if device.type == "cuda":
        make_deterministic()
    return device


def to_device(batch: Any, device: torch.device | None) -> Any:
    """A batch (tensor, or tuple/list of tensors) on ``device``; asynchronous copies from pinned memory."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    return type(batch)(to_device(t, device) for t in batch)


def loader_options(device: torch.device | None, num_workers: int) -> dict[str, Any]:
    """DataLoader options that overlap loading with compute: worker processes, and pinned host memory
    (page-locked, so the copy to the GPU runs asynchronously) when the batches go to a GPU."""
    return {"num_workers": num_workers, "pin_memory": device is not None and device.type == "cuda"}


def task_on(task: Any, device: torch.device) -> Any:
    """The task with its tensors (a residual super-resolution task's reference upsampling) on ``device``."""
    reference = getattr(task, "reference", None)
    if reference is None:
        return task
    return dataclasses.replace(task, reference=copy.deepcopy(reference).to(device))


def cpu_state(value: Any) -> Any:
    """A checkpoint payload with every tensor on the CPU, so it loads on any machine."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: cpu_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_state(v) for v in value)
    return value


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_info(device: torch.device) -> dict[str, Any]:
    """What a run ran on, for its metrics JSON: the device, its name, and the library versions."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_model_name()
    return {
        "device": str(device),
        "device_name": name,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "fp32_precision": {
            "conv": torch.backends.cudnn.conv.fp32_precision,
            "matmul": torch.backends.cuda.matmul.fp32_precision,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "numpy": np.__version__,
            "e2cnn": _version("e2cnn"),
        },
    }
