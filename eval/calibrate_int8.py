"""Calibrate styler's int8 activation scales: the VGG19 encoder's, or a model's residual blocks'.

    python eval/calibrate_int8.py --data DATA [--images 16] [--size 512]
    python eval/calibrate_int8.py --data DATA --model styler/weights/styler-blocks

Without ``--model``: the first ``--images`` content photos and as many style images of ``DATA``
that the held-out split leaves to training, at ``--size`` px on the shorter side, through the
float VGG19, into ``styler/weights/vgg19-int8.json``. With ``--model``: those photos stylized
with those styles (first with first…) by the model in float32, whose blocks' inputs give the
scales written into the model's JSON file under ``int8_blocks`` (its weights are not touched).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from styler import images, pipeline, quant
from styler.data import list_images
from styler.files import atomic_write
from styler.net import ENCODER_LAYER
from styler.split import read_split
from styler.vgg import VGG19


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a folder with content/ and style/")
    p.add_argument("--images", type=int, default=16, help="images of each folder")
    p.add_argument("--size", type=int, default=512, help="their shorter side, in pixels")
    p.add_argument("--model", type=Path, help="calibrate this f_θ's residual blocks instead")
    a = p.parse_args()
    split = read_split()
    contents = list_images(a.data / "content", set(split.content))[: a.images]
    styles = list_images(a.data / "style", set(split.style))[: a.images]
    if a.model:
        pipeline.calibrate_int8(a.model, list(zip(contents, styles)), a.size)
        print(f"{a.model}: scales of its int8 blocks written into its JSON file")
        return
    files = [*contents, *styles]
    cal = quant.calibrate(VGG19(max_layer=ENCODER_LAYER), (images.read(f, a.size) for f in files))
    out = Path(str(quant.calibration_file()))
    atomic_write(out, (json.dumps(dataclasses.asdict(cal), indent=1) + "\n").encode())
    print(out, cal.scales)


if __name__ == "__main__":
    main()
