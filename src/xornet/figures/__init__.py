"""The figures, drawn headless with matplotlib's public API (Agg canvas, no pyplot): the
only layer that imports matplotlib, Pillow or contourpy. One module per figure — curves,
decision (the decision view, also the animation's), confusion, animation, study — plus
style (colours, captions, the PNG writer) and plots (the functions the stages call).
Every figure function returns the file's bytes: the same inputs give the same bytes.
"""
