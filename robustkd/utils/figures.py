"""Writing a matplotlib figure as a PNG: atomically, closed afterwards, an unwritable target one clear error."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from robustkd.errors import RobustKDError
from robustkd.utils.atomic import write_with_atomic


def save_png(figure: Figure, target: Path, option: str, dpi: int = 120) -> None:
    """Write ``figure`` to ``target`` (atomically) and close it; an OSError becomes a RobustKDError naming
    ``option`` (the command-line option that chose the path) and the file."""
    import matplotlib.pyplot as plt

    try:
        write_with_atomic(target, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi))
    except OSError as exc:
        raise RobustKDError(f"{option} {target}: cannot write ({exc.strerror or exc})") from None
    finally:
        plt.close(figure)
