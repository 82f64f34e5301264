"""params.yaml validation: every bad value fails at once and names its key."""

from pathlib import Path

import pytest
import yaml

from models.catalog import MODEL_NAMES
from pipelines.params import ParamsError, SmokeParams, load_params, parse_params

REPO = Path(__file__).resolve().parent.parent


def test_embedded_default_is_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.smoke.levels == [0, 5, 9]
    assert params.smoke.buoyancy_indices == [1, 6, 10, 11, 16, 19, 28]


@pytest.mark.parametrize(
    ("section", "key_path", "bad"),
    [
        ("smoke", {"resolution": -64}, "smoke.resolution"),
        ("smoke", {"keep_stop": 80}, "keep_stop=80 is past the end"),
        ("smoke", {"solver": {"method": "multigrid"}}, "smoke.solver.method"),
        ("smoke", {"levels": [0, 10]}, "smoke.levels.1"),
        ("smoke", {"levels": [0, 0]}, "levels must be unique"),
        ("smoke", {"n_simulations": 10, "levels": [9]}, "need buoyancy index 28"),
        ("smoke", {"inflow_center": [80, 5]}, "inflow_center.x=80"),
        ("smoke", {"splits": {"train": 0.9, "valid": 0.05, "test": 0.05}}, "splits.valid gets 2 frames"),
        ("smoke", {"splits": {"train": 0.5, "valid": 0.2, "test": 0.2}}, "must sum to 1"),
        ("smoke", {"resoluton": 64}, "smoke.resoluton"),
        ("compute", {"n_workers": 0}, "compute.n_workers"),
    ],
)
def test_bad_values_name_their_key(section: str, key_path: dict, bad: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({section: key_path})
    assert bad in str(info.value)


def test_all_errors_are_reported_together() -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({"smoke": {"resolution": 0, "dt": -1}})
    text = str(info.value)
    assert "smoke.resolution" in text and "smoke.dt" in text


def test_load_params_merges_overrides_and_reports_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"smoke": {"levels": [0]}}))
    params = load_params(path, overrides={"smoke": {"steps": 70, "keep_stop": 70}})
    assert params.smoke.levels == [0] and params.smoke.steps == 70
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    path.write_text("smoke: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_split_bounds_are_disjoint_and_cover_the_kept_frames() -> None:
    p = SmokeParams()
    bounds = p.split_bounds()
    assert bounds["train"][0] == 0 and bounds["test"][1] == p.n_frames
    assert bounds["train"][1] == bounds["valid"][0] and bounds["valid"][1] == bounds["test"][0]
    assert p.level_indices(5) == (1, 6, 11, 16)


def test_params_reference_is_current() -> None:
    from pipelines.params import params_reference

    assert (REPO / "docs" / "params.md").read_text() == params_reference() + "\n", (
        "docs/params.md is stale: run `python -m pipelines.params > docs/params.md`"
    )


def test_study_preset_is_valid_and_at_the_published_scale() -> None:
    study = load_params(REPO / "params.study.yaml")
    assert study.turbulence.splits.model_dump() == {"train": 40, "valid": 5, "test": 5}
    assert len(study.train.smoke.seeds) >= 5 and len(study.train.turbulence.seeds) >= 5
    assert study.train.smoke.hparams == {} and study.smoke.levels == [0, 5, 9]


# --- project issue 10 §5: strict, finite, bounded values, refused before any work ---------------------


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"smoke": {"resolution": True}}, "smoke.resolution: Input should be a valid integer"),
        ({"smoke": {"steps": 61.0}}, "smoke.steps: Input should be a valid integer"),
        ({"smoke": {"solver_symmetry_check": 1}}, "smoke.solver_symmetry_check"),
        ({"smoke": {"dt": float("inf")}}, "smoke.dt: Input should be a finite number"),
        ({"smoke": {"box_size": float("inf")}}, "smoke.box_size: Input should be a finite number"),
        ({"smoke": {"buoyancy_unit": float("nan")}}, "smoke.buoyancy_unit: Input should be a finite"),
        ({"smoke": {"inflow_center": [float("nan"), 5.0]}}, "smoke.inflow_center.0"),
        ({"turbulence": {"synthetic": {"viscosity": float("inf")}}}, "turbulence.synthetic.viscosity"),
        ({"train": {"smoke": {"optimiser": {"lr": float("inf")}}}}, "train.smoke.optimiser.lr"),
        ({"landscape": {"displacements": [0.1, float("inf")]}}, "landscape.displacements.1"),
        ({"train": {"smoke": {"models": ["cnn"], "hparams": {"cnn": {"hidden": True}}}}}, "cnn.hidden"),
        ({"train": {"smoke": {"models": ["cnn"], "hparams": {"rgcnn": {"alpha": 1e999}}}}}, "rgcnn.alpha"),
        ({"smoke": {"levels": [5]}}, "train.smoke.levels: [0] are not among the stored smoke.levels=[5]"),
        ({"compute": {"scheduler_address": "localhost:8786"}}, "compute.scheduler_address: must be tcp://"),
        ({"compute": {"scheduler_address": "tcp://host:99999"}}, "compute.scheduler_address"),
        ({"compute": {"n_workers": 100000}}, "exceeds 4 x CPU count"),
        ({"smoke": {"steps": 10**9, "keep_stop": 60}}, "smoke.steps: Input should be less than or equal"),
        ({"smoke": {"steps": 1_000_000, "resolution": 512}}, "smoke: estimated time"),
        ({"smoke": {"resolution": 100_000, "box_size": 64.0}}, "smoke: estimated memory"),
        ({"turbulence": {"synthetic": {"spinup_time": 1e12}}}, "turbulence: estimated time"),
        ({"turbulence": {"hr_resolution": 512, "synthetic": {"resolution": 1024}}}, "estimated memory"),
        ({"train": {"smoke": {"optimiser": {"max_epochs": 10**9}}}}, "train.smoke.optimiser.max_epochs"),
        # seeds, the landscape budget, publish names
        ({"landscape": {"direction_seed": 2**70}}, "landscape.direction_seed: Input should be less than"),
        ({"smoke": {"seed": 2**32}}, "smoke.seed"),
        ({"landscape": {"directions": 10**9}}, "landscape.directions: Input should be less than or equal"),
        ({"landscape": {"hutchinson_probes": 10**9}}, "landscape.hutchinson_probes"),
        ({"landscape": {"lanczos_steps": 10**9}}, "landscape.lanczos_steps"),
        ({"landscape": {"slq_probes": 10**9}}, "landscape.slq_probes"),
        ({"landscape": {"subset_min_samples": 10**9}}, "landscape.subset_min_samples"),
        (
            {"landscape": {"slq_probes": 5000, "lanczos_steps": 2000, "subset_min_samples": 200}},
            "landscape: estimated time",
        ),
        ({"publish": {"license": "mit\nanything: else"}}, "publish.license: String should match"),
        ({"publish": {"revision": "../../x"}}, "publish.revision: must be a valid git branch name"),
        ({"publish": {"revision": "/main"}}, "publish.revision"),
        ({"publish": {"revision": "a b"}}, "publish.revision"),
        ({"publish": {"revision": "x.lock"}}, "publish.revision"),
    ],
)
def test_bad_values_are_refused_with_their_key(raw: dict, needle: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    assert needle in str(info.value)


def test_valid_scheduler_addresses_and_worker_counts_pass() -> None:
    for address in ("tcp://127.0.0.1:8786", "tcp://scheduler.cluster:8786", "tls://[::1]:8786"):
        assert parse_params({"compute": {"scheduler_address": address}}).compute.scheduler_address == address
    # a remote cluster's size is not this machine's business
    big = {"scheduler_address": "tcp://h:1", "n_workers": 1000}
    assert parse_params({"compute": big}).compute.n_workers == 1000


def test_empty_params_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    for text in ("", "# only a comment\n"):
        path.write_text(text)
        with pytest.raises(ParamsError, match="is empty"):
            load_params(path)
    with pytest.raises(ParamsError, match="is empty"):
        parse_params({})


def test_lr_factor_must_fit_the_sr_models_for_training() -> None:
    p = parse_params({"turbulence": {"hr_resolution": 32, "lr_factor": 2}}).turbulence  # data: fine
    with pytest.raises(ParamsError, match="turbulence.lr_factor=2: the super-resolution models upsample x4"):
        p.check_trainable()
    parse_params({"turbulence": {"hr_resolution": 32, "lr_factor": 4}}).turbulence.check_trainable()


def test_budget_estimate_of_the_defaults_is_far_below_the_limits() -> None:
    from pipelines.params import MAX_MEMORY_GIB, check_budget

    load_params(REPO / "params.yaml")  # passes
    load_params(REPO / "params.study.yaml")
    with pytest.raises(ValueError, match=f"memory 128 GiB exceeds the limit of {MAX_MEMORY_GIB:g} GiB"):
        check_budget("x", 128 * 2**30, 0, 0)
    with pytest.raises(ValueError, match="time nan h"):
        check_budget("x", 0, 0, float("nan"))


def test_params_reference_shows_real_defaults_and_readable_types() -> None:
    from pipelines.params import params_reference

    text = params_reference()
    assert "PydanticUndefined" not in text and "FieldInfo" not in text and "Annotated" not in text
    rows = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("## `"):
            section = line[4:-1]
        elif line.startswith("| `"):
            cells = [c.strip() for c in line.split(" | ")]
            rows[f"{section}.{cells[0].strip('| `')}"] = cells
    # nested sections show what their parent sets, not the class default
    assert rows["train.turbulence.models"][2] == "`['cnn', 'gcnn', 'rgcnn']`"
    assert rows["train.turbulence.optimiser.batch_size"][2] == "`4`"
    assert rows["train.smoke.optimiser.batch_size"][2] == "`8`"
    assert rows["smoke.levels"][1] == "list[int (>= 0, < 10)]"


# --- project issue 19 §7: hparams bounded, 32-bit seeds, a landscape budget, strict YAML, short errors --


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (
            {"smoke": {"hparams": {"cnn": {"hidden": -4}}}},
            "  train.smoke.hparams.cnn.hidden: must be >= 1, got -4\n",
        ),
        ({"smoke": {"hparams": {"cnn": {"kernel_size": 0}}}}, "smoke.hparams.cnn.kernel_size: must be >= 1"),
        ({"smoke": {"hparams": {"gcnn": {"kernel_size": 4}}}}, "gcnn.kernel_size: must be odd, got 4"),
        ({"smoke": {"hparams": {"rsteer": {"relax_scale": -0.1}}}}, "rsteer.relax_scale: must be > 0"),
        ({"smoke": {"hparams": {"rsteer": {"relax_scale": "big"}}}}, "rsteer.relax_scale: must be a finite"),
        ({"smoke": {"hparams": {"gmcnn": {"variant": "x"}}}}, "gmcnn.variant: must be one of"),
        ({"smoke": {"hparams": {"e2cnn": {"layers": 1}}}}, "e2cnn.layers: e2cnn needs at least 2"),
        ({"smoke": {"hparams": {"rgcnn": {"banks": 0}}}}, "rgcnn.banks: must be >= 1"),
        ({"turbulence": {"hparams": {"cnn": {"enc_layers": -1}}}}, "train.turbulence.hparams.cnn.enc_layers"),
        ({"turbulence": {"hparams": {"gcnn": {"up_layers": [1, -2]}}}}, "gcnn.up_layers: each entry"),
        ({"turbulence": {"hparams": {"cnn": {"padding": "reflect"}}}}, "cnn.padding: must be one of"),
        ({"smoke": {"seeds": [0, 2**32]}}, "train.smoke.seeds.1: Input should be less than 4294967296"),
    ],
)
def test_model_hparams_and_seeds_are_bounded(raw: dict, needle: str) -> None:
    for section in raw.values():
        section.setdefault("models", ["cnn"])
    with pytest.raises(ParamsError) as info:
        parse_params({"train": raw})
    assert needle in str(info.value)


def test_model_hparams_must_fit_the_smoke_data() -> None:
    models = list(MODEL_NAMES["smoke"])

    def train(hparams: dict) -> dict:
        return {"smoke": {"models": models, "hparams": hparams}}

    with pytest.raises(ParamsError, match="cnn.in_frames: 2 differs from smoke.input_frames=1"):
        parse_params({"train": train({"cnn": {"in_frames": 2}})})
    with pytest.raises(ParamsError, match="gmcnn.grid: 32 differs from smoke.resolution=64"):
        parse_params({"train": train({"gmcnn": {"error": True, "grid": 32}})})
    two = {"input_frames": 2, "output_frames": 4}
    parse_params({"smoke": two, "train": train({m: {"in_frames": 2} for m in models})})


def test_bounds_keep_the_shipped_presets_and_real_names_valid() -> None:
    for name in ("params.yaml", "params.cpu.yaml", "params.study.yaml"):
        load_params(REPO / name)
    ok = parse_params({"publish": {"revision": "feature/v1.2_x", "license": "apache-2.0"},
                       "landscape": {"direction_seed": 2**32 - 1}})  # fmt: skip
    assert ok.publish.revision == "feature/v1.2_x" and ok.landscape.direction_seed == 2**32 - 1


@pytest.mark.parametrize("name", ["params.yaml", "params.cpu.yaml", "params.study.yaml"])
def test_every_preset_measures_the_curvature_of_every_compared_pair(name: str) -> None:
    """The report's flatness claims per pair (pipelines/datasets.py ``comparisons``) need both models'
    landscapes: each preset lists every model of a pair it trains."""
    from pipelines.datasets import dataset_spec

    params = load_params(REPO / name)
    for dataset in params.datasets:
        trained = set(getattr(params.train, dataset).models)
        paired = {m for pair in dataset_spec(dataset).comparisons if set(pair) <= trained for m in pair}
        assert paired and paired <= set(params.landscape.models[dataset]), (dataset, paired)


def test_duplicate_yaml_keys_are_refused_with_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("smoke:\n  resolution: 32\n  steps: 60\n  resolution: 64\n")
    with pytest.raises(ParamsError, match=r"duplicate key 'resolution' on line 4 \(first on line 2\)"):
        load_params(path)
    from pipelines.params.yaml_unique import load_yaml  # a merge may still override what it brings in

    assert load_yaml("b: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n")["c"] == {"x": 2}


def test_errors_echo_no_value_longer_than_a_line(tmp_path: Path) -> None:
    # 9^6 leaves through nested aliases: a full repr is megabytes (the study-sized one was 580 MB)
    anchors = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    anchors += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 6)]
    path = tmp_path / "params.yaml"
    path.write_text(
        "anchors:\n  "
        + "\n  ".join(anchors)
        + "\nsmoke:\n  bogus: [*a5]\n  resolution: '"
        + "9" * 5000
        + "'\n"
        "train:\n  smoke:\n    models: [cnn]\n    hparams: {cnn: {hidden: [*a5]}}\n"
    )
    with pytest.raises(ParamsError) as info:
        load_params(path)
    lines = str(info.value).splitlines()
    assert any(line.startswith("  smoke.bogus: Extra inputs") for line in lines)
    assert any(line.startswith("  smoke.resolution:") for line in lines)
    assert len(lines) < 10 and max(len(line) for line in lines) <= 402
    with pytest.raises(ParamsError) as info:  # one line per bad item, but not 500 of them
        parse_params({"smoke": {"levels": [[0]] * 500}})
    assert len(str(info.value).splitlines()) < 25 and "... and 480 more" in str(info.value)
    path.write_text("smoke:\n  seed: " + "9" * 5000 + "\n")  # too long for int(): still a named error
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)
