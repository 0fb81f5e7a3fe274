"""Run inside the GPU service image on a machine without a GPU: are its CUDA libraries complete?

`make check-gpu-image` builds the image and runs this in it. It passes when
1. every shared library of onnxruntime's CUDA provider, and of the CUDA/cuDNN wheels it loads (cuDNN opens its
   engine libraries itself, later), resolves, except the driver's libcuda.so.1, which the NVIDIA container
   toolkit mounts from the host at run time;
2. a CUDA-only session fails for want of a device or driver, not of a library;
3. the service with REQUIRE_GPU=1 refuses to start, saying so, instead of serving on the CPU.
Prints what it checked; exit status 0 only if all three hold.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import build_and_package_info

FROM_THE_HOST = {"libcuda.so.1"}  # the driver: mounted by the NVIDIA container toolkit, never in an image
NO_DEVICE = ("no CUDA-capable device", "CUDA driver version is insufficient", "cudaErrorNoDevice",
             "cudaErrorInsufficientDriver", "CUDA failure 100", "CUDA failure 35", "found no NVIDIA driver")
MISSING_LIBRARY = ("cannot open shared object file", "Failed to load library")


def unresolved(library: Path) -> set[str]:
    lines = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True).stdout.splitlines()
    return {line.split()[0] for line in lines if "not found" in line}


def check_libraries() -> bool:
    capi, nvidia = Path(ort.__file__).parent / "capi", Path(ort.__file__).parent.parent / "nvidia"
    providers = [capi / "libonnxruntime_providers_cuda.so", capi / "libonnxruntime_providers_shared.so"]
    wheels = sorted(path.parent.name for path in nvidia.glob("*/lib"))
    libraries = providers + sorted(nvidia.glob("*/lib/*.so*"))
    missing = {library: unresolved(library) - FROM_THE_HOST for library in libraries}
    print(f"{len(libraries)} libraries checked with ldd: onnxruntime's CUDA provider (and its shared part), and "
          f"{len(libraries) - 2} from the wheels {', '.join(wheels)} (the TensorRT provider is not used: TensorRT "
          "is not installed)")
    for library, names in missing.items():
        if names:
            print(f"  UNRESOLVED in {library.name}: {', '.join(sorted(names))}")
    return not any(missing.values())


def check_session(model: Path) -> bool:
    """onnxruntime's Python API prints the provider's error and falls back to the CPU: read what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        session = ort.InferenceSession(str(model), providers=["CUDAExecutionProvider"])
    error = next((line for line in printed.getvalue().splitlines() if line.startswith("EP Error")), "")
    reason = error[error.find("CUDA failure"):].split(";")[0] if "CUDA failure" in error else error[:300]
    print(f"CUDA-only session: ran on {session.get_providers()}; the CUDA provider's error: {reason or 'none'}")
    failed_for_device = any(s in error for s in NO_DEVICE) and not any(s in error for s in MISSING_LIBRARY)
    return failed_for_device and "CUDAExecutionProvider" not in session.get_providers()


def check_service() -> bool:
    env = {**os.environ, "REQUIRE_GPU": "1"}
    result = subprocess.run([sys.executable, "-m", "service"], capture_output=True, text=True, timeout=120, env=env)
    refusal = result.stderr.strip().splitlines()[-1:] or [""]
    print(f"python -m service with REQUIRE_GPU=1: exit {result.returncode}: {refusal[0][:300]}")
    return result.returncode == 2 and "REQUIRE_GPU" in refusal[0]


def main() -> int:
    print(f"onnxruntime-gpu {ort.__version__}, built for CUDA {build_and_package_info.cuda_version}; "
          f"providers available: {', '.join(ort.get_available_providers())}")
    model = Path(os.environ["MODEL_REPOSITORY"]) / os.environ["DEFAULT_MODEL"]
    checks = {
        "libraries resolve": check_libraries(),
        "the session fails only for want of a device": check_session(model / "generator.onnx"),
        "the service refuses to run on the CPU when REQUIRE_GPU=1": check_service(),
    }
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
