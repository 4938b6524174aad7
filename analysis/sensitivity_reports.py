"""Regenerate the committed sensitivity reports (``latbench analyze --measure``) of ResNet-56 and
MobileNet-V2 on the shipped 1-thread CPU profile, and ``analysis/sensitivity_reports.json`` with
the agreement of predicted and measured sensitivity.

    python analysis/sensitivity_reports.py [--profile DIR] [--models resnet56,mobilenetv2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.models import build_candidate, build_model, get_entry
from latbench.sensitivity.report import write_report

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1")
    parser.add_argument("--models", default="resnet56,mobilenetv2")
    args = parser.parse_args()
    profile = DeviceProfile.load(args.profile)
    index = HERE / "sensitivity_reports.json"
    results = json.loads(index.read_text()) if index.exists() else {}
    for name in args.models.split(","):
        started = time.perf_counter()
        arch = trace(build_model(name), torch.zeros(1, *get_entry(name).input_shape), name)
        report = write_report(arch, profile, HERE / name, lambda a, name=name: build_candidate(name, a), measure=True)
        top = report.frames["ranking"].head(5)
        results[name] = {"profile": profile.name, "minutes": (time.perf_counter() - started) / 60,
                         "agreement": report.agreement,
                         "top5_predicted": top[["group_name", "saved_share", "sensitivity"]].to_dict("records")}
        print(f"{name}: {json.dumps(report.agreement)}", flush=True)
    index.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
