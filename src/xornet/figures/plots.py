"""The figures the stages draw, by name (each lives in its own module of this package)."""

from xornet.figures.animation import training_gif as training_gif
from xornet.figures.confusion import confusion_matrix_png as confusion_matrix_png
from xornet.figures.curves import learning_curves_png as learning_curves_png
from xornet.figures.decision import decision_boundary_png as decision_boundary_png
from xornet.figures.study import convergence_png as convergence_png
from xornet.figures.study import save_convergence as save_convergence
