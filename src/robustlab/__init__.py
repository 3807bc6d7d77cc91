"""robustlab: train, attack, defend and honestly measure image classifiers."""

__version__ = "0.1.0"
