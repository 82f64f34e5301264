"""The publish stage: one Hugging Face dataset repo per dataset, built locally and optionally uploaded.

* :mod:`.stage` -- the stage function and its command line (``python -m pipelines.publish``);
* :mod:`.kinds` -- what each dataset kind provides; :mod:`.smoke_kind`, :mod:`.turbulence_kind`;
* :mod:`.repo` -- building a repo folder (card, parquet, zarr copy, stats, checksums);
* :mod:`.upload` -- the idempotent upload through huggingface_hub.
"""
