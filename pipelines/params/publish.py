"""The ``publish`` section: Hub repos (ids checked against the Hub's rules) and upload settings."""


from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from pipelines.params.base import (
    PositiveFloat,
    PositiveInt,
    Strict,
)


def check_repo_id(repo_id: str) -> str:
    """The Hub's repo id rules: ``namespace/name``, each part of [A-Za-z0-9-_.], not starting or ending
    with ``-`` or ``.``, no ``--`` or ``..``, at most 96 characters. Path-like values (``..``, ``.``,
    ``a/../b``, absolute paths) fail here, before any folder named after the id is written or synced."""
    parts = repo_id.split("/")
    if len(repo_id) > 96:
        raise ValueError(f"repo id {repo_id!r} is longer than 96 characters")
    if len(parts) != 2:
        raise ValueError(f"repo id {repo_id!r} must be namespace/name (exactly one '/')")
    for part in parts:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", part):
            raise ValueError(f"repo id {repo_id!r}: {part!r} may only use letters, digits, '-', '_' and '.'")
        if part[0] in "-." or part[-1] in "-." or "--" in part or ".." in part:
            raise ValueError(
                f"repo id {repo_id!r}: {part!r} must not start or end with '-' or '.', nor hold '--' or '..'"
            )
    return repo_id


HubRepoId = str  # checked by check_repo_id in PublishParams

# an SPDX-style id as the Hub's card metadata takes it (cc-by-4.0, apache-2.0, mit, other)
LICENSE_ID = r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}"


def check_revision(name: str) -> str:
    """A branch name by git's check-ref-format rules (what the Hub accepts as a revision)."""
    problem = None
    if len(name) > 255:
        problem = "is longer than 255 characters"
    elif re.search(r"[\x00-\x20\x7f~^:?*\[\\]", name):
        problem = "holds whitespace, a control character or one of ~ ^ : ? * [ \\"
    elif name.startswith(("/", "-")) or name.endswith(("/", ".")) or name == "@":
        problem = "must not start with '/' or '-', end with '/' or '.', nor be '@'"
    elif ".." in name or "//" in name or "@{" in name:
        problem = "must not hold '..', '//' or '@{'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        problem = "has a component starting with '.' or ending with '.lock'"
    if problem:
        raise ValueError(f"must be a valid git branch name: it {problem}")
    return name


class PublishParams(Strict):
    """Hub dataset repos built by the publish stage (docs/hub.md). ``target: local`` writes the repo layout
    under ``--out`` only (offline, the embedded default); ``target: hub`` also uploads each repo to the
    endpoint in ``HF_ENDPOINT`` with the token in ``HF_TOKEN``."""

    target: Literal["local", "hub"] = "local"
    datasets: list[str] = Field(
        ["smoke", "turbulence"], description="the datasets to publish (each built in or in dataset_specs)"
    )
    repos: dict[str, HubRepoId] = {
        "smoke": "symflow/smoke-plume-c4",
        "turbulence": "symflow/isotropic-turbulence-sr",
    }
    revision: str = Field("main", min_length=1, description="branch to commit to (created if missing)")
    private: bool = False
    license: str = Field(
        "cc-by-4.0", pattern=f"^{LICENSE_ID}$", description="an SPDX-style licence id for the card"
    )
    parquet_rows_per_file: PositiveInt = Field(2048, description="rows per parquet file (shards a split)")
    parquet_row_group: PositiveInt = Field(64, description="rows per parquet row group (read granularity)")
    mini_frames: PositiveInt = Field(
        8, description="frames (smoke) or samples (turbulence) per split in 'mini'"
    )
    timeout_seconds: PositiveFloat = Field(60.0, description="per-request timeout when talking to the Hub")

    @field_validator("repos")
    @classmethod
    def _valid_repo_ids(cls, repos: dict[str, str]) -> dict[str, str]:
        for repo_id in repos.values():
            check_repo_id(repo_id)
        return repos

    @field_validator("revision")
    @classmethod
    def _valid_revision(cls, revision: str) -> str:
        return check_revision(revision)

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, datasets: list[str]) -> list[str]:
        if not datasets or len(set(datasets)) != len(datasets):
            raise ValueError(f"datasets must be a non-empty list without repeats, got {datasets}")
        return datasets

    @model_validator(mode="after")
    def _repo_for_each(self) -> PublishParams:
        missing = [name for name in self.datasets if name not in self.repos]
        if missing:
            raise ValueError(f"no repos.<name> entry for dataset(s) {missing}")
        # one repo per dataset: a second dataset's commit would delete the first one's files
        # and one local folder per repo: the folder is named after the repo's name part
        seen: dict[str, str] = {}
        for name, repo_id in self.repos.items():
            folder = repo_id.split("/")[-1].lower()
            if folder in seen:
                first = seen[folder]
                raise ValueError(
                    f"repos.{name} ({repo_id!r}) and repos.{first} ({self.repos[first]!r}) share the repo "
                    f"name {folder!r}: one would overwrite the other"
                )
            seen[folder] = name
        return self


# --- isotropic turbulence super-resolution (docs/turbulence.md) ---------------------------------------

NonNegativeFloat = Annotated[float, Field(ge=0)]
