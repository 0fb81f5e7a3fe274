"""Generator throughput: onnxruntime vs PyTorch eager, images/s at batch 1, 16, 64 and 256, in one run.

    python bench/infer_speed.py [--run RUN_DIR] [--precision fp32|fp16] [--seconds 2]

Without --run it times the mnist preset's network at initial weights (speed does not depend on the weights).
onnxruntime runs the file `python -m export` writes; both sides get the same number of threads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export.export import export_graph, finish_graph
from training.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_networks
from training.config import PRESETS
from training.model import Generator, sample_latents

BATCHES = (1, 16, 64, 256)


def throughput(call, batch: int, seconds: float) -> float:
    for _ in range(3):
        call()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        count += 1
    return count * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="training run to time (default: the mnist preset, untrained)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cuda", action="store_true", help="also time onnxruntime's CUDA provider and torch on CUDA")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = args.run / CHECKPOINT_NAME if args.run else None
    generator = load_networks(load_checkpoint(run))[0] if run else Generator(PRESETS["mnist"]).eval()
    layout = generator.layout
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "generator.onnx"
        example = sample_latents(layout, 2, torch.Generator().manual_seed(0), "cpu")
        export_graph(generator, example, path, ["noise", "categorical", "continuous"], ["images"])
        finish_graph(path, {}, args.precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        sessions = {"onnxruntime CPU": ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])}
        if args.cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            sessions["onnxruntime CUDA"] = ort.InferenceSession(str(path), options, providers=["CUDAExecutionProvider"])
        for batch in BATCHES:
            noise, categorical, continuous = sample_latents(layout, batch, torch.Generator().manual_seed(batch), "cpu")
            feeds = {"noise": noise.numpy(), "categorical": categorical.numpy(), "continuous": continuous.numpy()}
            row = {"batch": batch}
            with torch.inference_mode():
                row["torch eager CPU"] = throughput(partial(generator, noise, categorical, continuous), batch, args.seconds)
            for name, session in sessions.items():
                row[name] = throughput(partial(session.run, None, feeds), batch, args.seconds)
            row["ratio ort/torch"] = row["onnxruntime CPU"] / row["torch eager CPU"]
            rows.append(row)
    print("| batch | torch eager CPU (img/s) | onnxruntime CPU (img/s) | ratio |"
          + "".join(f" {n} (img/s) |" for n in sessions if "CUDA" in n))
    print("|---|---|---|---|" + "---|" * sum("CUDA" in n for n in sessions))
    for row in rows:
        print(f"| {row['batch']} | {row['torch eager CPU']:,.0f} | {row['onnxruntime CPU']:,.0f} | "
              f"{row['ratio ort/torch']:.2f}x |" + "".join(f" {row[n]:,.0f} |" for n in sessions if "CUDA" in n))
    print(json.dumps({"threads": args.threads, "precision": args.precision, "ort": ort.__version__,
                      "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
