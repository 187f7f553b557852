"""``elbokit sample``: draw from a trained model (an image grid, .npy or .csv)."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from .. import runs, workflows
from ..data.columns import rows_text
from ..errors import ConfigError
from . import COMMANDS
from .common import add_model_option, memory_guard, positive_int, seed, write_bytes_output

FORMATS = (".png", ".npy", ".csv")


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=COMMANDS[name],
                       description="Draw x ~ p(x) = ∫ p(x|z) p(z) dz from a trained run.")
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by `elbokit fit`")
    p.add_argument("-n", type=positive_int, default=64, help="how many samples (64)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="output file: .png (image grid, image data only), .npy or .csv "
                   "(default RUN/samples.png for images, else RUN/samples.npy)")
    p.add_argument("--mean", action="store_true",
                   help="show E[x|z] (e.g. pixel probabilities) instead of a draw of x")
    p.add_argument("--seed", type=seed, default=0, help="seeds the draws (default 0)")
    add_model_option(p)


def image_grid(images: np.ndarray, path_buffer, columns: int | None = None) -> None:
    """Write ``images: [n, h, w]`` (values in [0, 1] or any range) as a PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = image
    # Upscale small images (8x8 digits) so that the grid is readable, pixels kept square.
    scale = max(1, 512 // grid.shape[1])
    grid = np.kron(np.nan_to_num(grid, nan=np.nanmin(grid)), np.ones((scale, scale)))
    plt.imsave(path_buffer, grid, cmap="gray", format="png")


def write_csv(buffer, x: np.ndarray, columns: list[str] | None) -> None:
    """``x: [n, dim]`` as CSV into the binary ``buffer``, under the training data's header
    when it had one (quoted as needed: names may hold commas), so that the samples read
    back (and line up in a spreadsheet) like the data."""
    if columns is not None:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(columns)
        buffer.write(line.getvalue().encode())
    np.savetxt(buffer, x, delimiter=",", fmt="%.6g")


def run(args: argparse.Namespace) -> int:
    run = workflows.Run.load(args.run, model=args.model)
    config = run.config
    shape = config["data"].get("image_shape")
    output: Path = args.output or args.run / ("samples.png" if shape else "samples.npy")
    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"-o {output}: unknown format; use one of {', '.join(FORMATS)}")
    if suffix == ".png" and not shape:
        raise ConfigError(f"-o {output}: the run's data are not images; write .npy or .csv")
    if not output.parent.is_dir():
        raise ConfigError(f"-o {output}: directory {output.parent} does not exist")
    run.fitted()
    with memory_guard(f"-n {args.n} samples", "draw fewer"):
        x = run.sample(args.n, seed=args.seed, mean=args.mean)
    if suffix == ".png":
        write_bytes_output(output, lambda f: image_grid(x.reshape(-1, *shape), f))
    elif suffix == ".npy":
        write_bytes_output(output, lambda f: np.save(f, x))
    elif getattr(run.fitted(), "schema_", None) is not None:  # a table: levels as their text
        text = rows_text(run.fitted().schema_, x)
        write_bytes_output(output, lambda f: f.write(text.encode()))
    else:
        columns = runs.column_names(config["data"])
        write_bytes_output(output, lambda f: write_csv(f, x, columns))
    print(f"wrote {args.n} samples to {output}")
    return 0
