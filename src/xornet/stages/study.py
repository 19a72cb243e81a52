"""Stage ``study``: the convergence study's grid trained over its seeds, its tables and figure."""

from xornet.config import footprint
from xornet.config.schema import Params
from xornet.core.training import Progress
from xornet.figures import plots
from xornet.study import convergence
from xornet.study.convergence import ConfigResult, StudyOutputs


def run_study(
    params: Params, outputs: StudyOutputs, progress: Progress | None = None
) -> list[ConfigResult]:
    """Train every configuration of ``params.study`` over its seeds; write the figure and
    the tables."""
    footprint.check(footprint.study_grid_estimate(params))
    configs = convergence.configurations(params)
    footprint.check(footprint.study_estimate(params, [c.params for c in configs]))
    results = convergence.train_grid(params, progress)
    plots.save_convergence(results, outputs.figure, params)
    convergence.write_tables(params, results, outputs)
    return results
