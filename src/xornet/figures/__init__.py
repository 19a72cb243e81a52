"""The figures, drawn headless with matplotlib's public API (Agg canvas, no pyplot) and
saved deterministically: the only layer that imports matplotlib, Pillow or contourpy.

- :mod:`~xornet.figures.curves` — learning curves (loss with the p = 0.5 plateau,
  validation accuracy);
- :mod:`~xornet.figures.decision` — the decision view: P(y = 1 | x) over the plane with
  the 0.5 contour, the data and each hidden unit's line; P by number of 1-bits (parity);
- :mod:`~xornet.figures.confusion` — the test set's confusion matrix;
- :mod:`~xornet.figures.animation` — the training GIF;
- :mod:`~xornet.figures.study` — the convergence study's figure;
- :mod:`~xornet.figures.style` — colours, captions, the PNG writer;
- :mod:`~xornet.figures.plots` — the figure functions the stages call, by name.

Every figure function returns the file's bytes (the stages write them atomically): the
same inputs give the same bytes.
"""
