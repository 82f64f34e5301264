"""``python -m pipelines.params > docs/params.md`` writes the params reference."""

from pipelines.params.reference import params_reference

print(params_reference())
