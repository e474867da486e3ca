"""A copy of an existing bundle whose sequence encoder also comes split (issue 24).

    PYTHONPATH=. python bench/split_copy.py --bundle BUNDLES/ml-100k-... --out ROOT

Bundles trained before issue 24 carry the whole sequence graph only. To compare the
split form with the whole graph on a real trained model (bench/serving_parity.py,
bench/serving_quality.py) without training again, this rebuilds the torch encoder
from the whole graph's weights (named initializers by name, the exporter's unnamed
MatMul weights in graph order, transposed), checks that torch reproduces the
bundle's graph (min cosine > 0.999, else it stops), exports the split pair with
training's exporter, checks it as training does, and seals ``<out>/<version>-split``:
the same files plus ``sequence_item_input.onnx`` and ``sequence_core.onnx`` and
``sequence_encoder.split`` in the manifest. A bench tool: training writes the split
form itself.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.bundle import load_bundle  # noqa: E402
from inference.bundle.manifest import (  # noqa: E402
    MANIFEST,
    SEQUENCE_CORE,
    SEQUENCE_ITEM_INPUT,
    SequenceSplitEntry,
)
from inference.bundle.writer import staging  # noqa: E402


def torch_encoder(onnx_path: Path, config: dict):  # type: ignore[no-untyped-def]
    """The training module with the weights of a whole sequence graph."""
    import onnx
    import torch
    from onnx import numpy_helper

    from training.sequence_model import SequenceEncoder, SequenceModelConfig

    graph = onnx.load(str(onnx_path)).graph
    named = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    unnamed = sorted(
        (n for n in named if n.startswith("onnx::MatMul_")),
        key=lambda n: int(re.sub(r"\D", "", n)),
    )
    enc = SequenceEncoder(SequenceModelConfig(**config)).eval()
    state = enc.state_dict()
    missing = [k for k in state if k not in named]
    if len(missing) != len(unnamed):
        raise SystemExit(f"{onnx_path}: {len(missing)} weights to place, {len(unnamed)} found")
    for key, name in zip(missing, unnamed, strict=True):
        named[key] = named[name].T  # the exporter stores Linear weights as (in, out)
    enc.load_state_dict({k: torch.from_numpy(np.array(named[k])) for k in state})
    return enc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="a bundle version directory")
    p.add_argument("--out", type=Path, required=True, help="root to seal the copy under")
    args = p.parse_args()

    from training import onnx_export as ox

    bundle = load_bundle(args.bundle)
    m = bundle.manifest
    if m.sequence_encoder.split is not None:
        raise SystemExit(f"{args.bundle} already has a split sequence encoder")
    whole = args.bundle / m.sequence_encoder.file
    enc = torch_encoder(whole, dict(m.config["model"]))
    vectors = np.asarray(bundle.vectors, dtype=np.float32)
    same = ox.check_sequence_parity(enc, whole, vectors)
    print(f"torch vs the bundle's graph: min cosine {same:.7f}")
    version = f"{m.version}-split"
    with staging(args.out, version) as stage:
        for f in args.bundle.iterdir():
            if f.name != MANIFEST:
                shutil.copyfile(f, stage.path / f.name)
        ox.export_sequence_split(enc, stage.path / SEQUENCE_ITEM_INPUT, stage.path / SEQUENCE_CORE)
        cos = ox.check_split_parity(
            enc, stage.path / SEQUENCE_ITEM_INPUT, stage.path / SEQUENCE_CORE, vectors
        )
        print(f"split graphs vs torch: min cosine {cos:.7f}")
        metrics = dict(m.metrics)
        metrics["export"] = {**metrics.get("export", {}), "sequence_split_parity_min_cos": cos}
        manifest = m.model_copy(
            update={
                "version": version,
                "sequence_encoder": m.sequence_encoder.model_copy(
                    update={"split": SequenceSplitEntry()}
                ),
                "metrics": metrics,
            }
        )
        final = stage.seal(manifest)
    print(final)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
