"""The figures, drawn with matplotlib: the only layer that imports matplotlib or Pillow."""
