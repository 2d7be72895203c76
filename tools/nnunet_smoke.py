"""Time one end-to-end pass of the nnU-Net adapter on the bundled test dataset.

Copies ``tests/data/Dataset_clasp_ct`` into fresh nnU-Net folders, keeps the labels only in a
few boxes per case (``ignore`` elsewhere), then plans, preprocesses, trains folds with a
trainer, predicts per-fold probabilities for some cases and scores the fold ensemble against
the full labels. Prints the time of every stage and writes them as JSON.

    python tools/nnunet_smoke.py --device cpu --folds 0 --threads 2
    python tools/nnunet_smoke.py --device cuda --folds 0 1 --trainer nnUNetTrainer_5epochs
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO / "tests" / "data" / "Dataset_clasp_ct"


def annotated_boxes(labels: np.ndarray, half: tuple[int, int, int], file: str) -> list:
    """One patch per foreground class, centred on the class's middle voxel (in C order),
    clipped to the volume."""
    from clasp_rs import Patch

    boxes = []
    for value in np.unique(labels):
        if value == 0:
            continue
        voxels = np.argwhere(labels == value)
        centre = voxels[len(voxels) // 2]
        start = [max(int(c) - h, 0) for c, h in zip(centre, half, strict=True)]
        end = [min(b + 2 * h, n) for b, h, n in zip(start, half, labels.shape, strict=True)]
        boxes.append(Patch(file, start, [e - b for b, e in zip(start, end, strict=True)]))
    return boxes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folds", nargs="+", default=["0"])
    parser.add_argument("--trainer", default="nnUNetTrainer_clasp_tiny")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--predict", type=int, default=2, help="cases to predict")
    parser.add_argument("--work", type=Path, default=None, help="folder (default: a temp one)")
    parser.add_argument("--json", type=Path, default=None, help="write timings here")
    args = parser.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="clasp_nnunet_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    os.environ.setdefault("nnUNet_n_proc_DA", "0")
    os.environ.setdefault("nnUNet_compile", "false")

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        print(f"[timing] {stage}: {timings[stage]:.2f} s", flush=True)
        clock = now

    import shutil

    import torch

    import clasp_rs.nnunet as nn
    from clasp_rs.io.dataset_json import load_dataset_json, write_dataset_json
    from clasp_rs.nnunet.labels import partial_labels, read_label, write_label_like

    if args.threads:
        torch.set_num_threads(args.threads)
    lap("import")

    raw = work / "nnUNet_raw" / "Dataset990_ClaspSmoke"
    shutil.copytree(DATASET, raw)
    dataset_json = load_dataset_json(raw / "dataset.json")
    ignore = max(dataset_json["labels"].values()) + 1
    dataset_json["labels"]["ignore"] = ignore
    write_dataset_json(raw / "dataset.json", dataset_json)
    annotated = total = 0
    for label_file in sorted((raw / "labelsTr").glob("*.nii.gz")):
        full, image = read_label(label_file)
        full = full.astype(np.uint8)
        boxes = annotated_boxes(full, (3, 8, 8), label_file.name)
        partial = partial_labels(full, boxes, ignore, np.uint8)
        write_label_like(partial, image, label_file)
        annotated += int(np.count_nonzero(partial != ignore))
        total += partial.size
    print(f"annotated voxels: {annotated} of {total} ({100 * annotated / total:.1f} %)")
    lap("partial labels")

    plans = nn.plan_experiment(990)
    lap("fingerprint + plan")
    cases = nn.preprocess(990, args.configuration, plans=plans)
    lap(f"preprocess {len(cases)} cases")

    for fold in args.folds:
        nn.train_fold(990, fold, args.trainer, configuration=args.configuration, device=args.device)
        lap(f"train fold {fold}")

    model = nn.model_folder(990, args.trainer, args.configuration, plans)
    chosen = cases[: args.predict]
    out = work / "probabilities"
    files = nn.predict_probabilities(
        model, raw / "imagesTr", out, chosen, folds=args.folds, device=args.device
    )
    lap(f"predict {len(chosen)} cases x {len(args.folds)} folds")

    with np.load(files[chosen[0]][0], allow_pickle=False) as data:
        probabilities = data[nn.PROBABILITIES_KEY]
    print(
        f"probabilities {probabilities.shape} {probabilities.dtype}, "
        f"max |sum - 1| = {np.abs(probabilities.sum(0) - 1).max():.2e}"
    )
    labels = [v for k, v in json.loads((raw / "dataset.json").read_text())["labels"].items()]
    foreground = [v for v in labels if v not in (0, ignore)]
    references = {c: DATASET / "labelsTr" / f"{c}.nii.gz" for c in chosen}
    predictions = {c: nn.ensemble_segmentation(files[c]) for c in chosen}
    result = nn.evaluate_segmentations(references, predictions, foreground)
    lap("evaluate")
    print(f"Dice per class {result.per_class}, mean {result.mean:.3f}")
    timings["total"] = round(sum(v for k, v in timings.items()), 2)
    print(json.dumps(timings, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"timings_s": timings, "dice": result.per_class}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
