"""The smoke stage: 2D buoyant smoke plumes with PhiFlow, an exactly C4-symmetric level and graded
symmetry-breaking levels.

* :mod:`.stage` -- the stage function and its command line (``python -m pipelines.smoke``);
* :mod:`.scenarios` -- a scenario is a frozen dataclass (sources, rotated, step, observe);
* :mod:`.simulate` -- batched PhiFlow time stepping of a list of scenarios;
* :mod:`.pressure` -- the explicit pressure solvers (DCT, PhiFlow's make_incompressible);
* :mod:`.levels` -- symmetry levels E_i assembled from simulations and their data errors.
"""
