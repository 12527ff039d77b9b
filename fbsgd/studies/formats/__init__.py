"""studies/formats: scaled formats as trained (chapters/formats.ipynb)."""
