"""`make demo`: ferkit's main job on an embedded default.

With the shipped model: `ferkit predict` on the example photo, writing an annotated image.
Without one (a development install before the flagship ships): a short, real training run on
FER-2013 from ../shared/data/fer2013 (or $FERKIT_DEMO_DATA), then its report.

    python -m ferkit.demo [--out out/demo]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ferkit.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "astronaut.png"
DATA_CANDIDATES = [os.environ.get("FERKIT_DEMO_DATA"), ROOT / ".." / "shared" / "data" / "fer2013"]


def _shipped_model() -> bool:
    from importlib import resources

    return resources.files("ferkit").joinpath("weights", "flagship.pt").is_file()


def run(out: Path) -> int:
    if _shipped_model() and EXAMPLE.exists():
        print(f"demo: recognising the faces in {EXAMPLE.name} with the shipped model")
        return cli(["predict", str(EXAMPLE), "--annotate", str(out), "--overwrite"])
    data = next((Path(p) for p in DATA_CANDIDATES if p and Path(p).exists()), None)
    if data is None:
        print(
            "demo: no shipped model and no FER-2013 data found; set FERKIT_DEMO_DATA to a "
            "FER-2013 folder or CSV",
            file=sys.stderr,
        )
        return 2
    run_dir = out / "run"
    print(
        f"demo: no shipped model yet; a short real training run on {data.resolve()}\n"
        f"      (the flagship recipe, 3 epochs on 6,000 training images; a few minutes)"
    )
    recipe = ROOT / "configs" / "flagship.yaml"
    code = cli(
        [
            "train",
            "--config",
            str(recipe),
            "--data",
            str(data),
            "--epochs",
            "3",
            "--set",
            "limit=6000",
            "--set",
            "warmup_epochs=0",
            "--out",
            str(run_dir),
            "--overwrite",
        ]
    )
    if code:
        return code
    code = cli(["report", str(run_dir)])
    print(f"demo: report PNGs in {run_dir}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    sys.exit(run(parser.parse_args().out))


if __name__ == "__main__":
    main()
