"""Training and loss-landscape library code: tasks, the training loop, curvature measurements, run identity.

Used by the stages in ``pipelines/``; uses ``loaders/`` and ``models/``; imports nothing from ``pipelines``.
"""
