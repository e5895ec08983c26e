"""The study's curves from a results database (robustkd.results.curves; ``robustkd study run`` draws them in its
report stage). Usage: python scripts/study_figures.py --db results/study/robustkd.db --out-dir results/study"""

import sys

from robustkd.results.curves import certified_figure, main, robustness_figure, write_curves

__all__ = ["certified_figure", "main", "robustness_figure", "write_curves"]

if __name__ == "__main__":
    sys.exit(main())
