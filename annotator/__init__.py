"""Auto Annotator: upload, auto-annotate, review, train and export object-detection datasets."""

__version__ = "0.4.0"
