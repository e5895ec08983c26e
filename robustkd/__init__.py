"""robustkd: distil small image classifiers and measure their robustness and calibration."""

__version__ = "0.1.0"
