"""The calibration: shipped constants are what the fit produces, meet the error goals, and never saw held-out data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.calibration import (
    PRIORS_FILE,
    calibration_version,
    evaluate,
    load_priors,
    refit,
    summarise,
)
from aim_infra.planning.measurements import MEASUREMENTS_DIR, load_measurements
from aim_infra.planning.performance_data import PERFORMANCE_FILE, load_performance_data

MEASUREMENTS = load_measurements()
TRAIN = [m for m in MEASUREMENTS if m.split in ("train", "local")]
HOLDOUT = [m for m in MEASUREMENTS if m.split == "holdout"]


def test_there_is_training_and_held_out_data_with_a_source_on_every_point() -> None:
    assert len(TRAIN) >= 29 and len(HOLDOUT) >= 10
    assert all(m.source for m in MEASUREMENTS)
    assert {m.id for m in TRAIN}.isdisjoint({m.id for m in HOLDOUT})


def test_shipped_constants_meet_the_goals_on_the_training_points() -> None:
    summary = summarise(evaluate(TRAIN, load_performance_data()))
    assert summary.points == len(TRAIN)
    assert summary.within_25 / summary.points >= 0.75
    assert 0.85 <= summary.median_ratio <= 1.15
    assert summary.over_2x == 0


def test_the_shipped_version_is_the_hash_of_the_fit_inputs() -> None:
    # Adding a measurement or changing a prior without refitting changes the hash and fails here.
    assert load_performance_data().calibration.version == calibration_version(TRAIN, load_priors())


def test_held_out_points_are_evaluated_but_never_fitted_on() -> None:
    results = evaluate(HOLDOUT, load_performance_data())
    replayed = [r for r in results if r.problem is None]
    assert len(replayed) >= 0.8 * len(HOLDOUT)
    # The version hashes exactly what was fitted: adding the held-out points would change it.
    assert calibration_version([*TRAIN, *HOLDOUT], load_priors()) != load_performance_data().calibration.version


# ~16 s of fitting: slow. The version-hash test above already fails fast on data or priors changed without a refit;
# this one also catches a change to the fit itself.
@pytest.mark.slow
def test_refitting_reproduces_the_shipped_constants(tmp_path: Path) -> None:
    out = tmp_path / "performance.yaml"
    shutil.copy(PERFORMANCE_FILE, out)
    fitted = refit(MEASUREMENTS_DIR, PRIORS_FILE, out)
    shipped = load_performance_data()
    assert fitted.calibration == shipped.calibration
    for family, constants in shipped.gpu_families.items():
        for name, value in constants.constants.model_dump().items():
            assert getattr(fitted.gpu_families[family].constants, name) == pytest.approx(value, rel=0.02), name
    assert fitted.bands.throughput.points == shipped.bands.throughput.points


def test_a_bad_measurement_file_is_one_line(tmp_path: Path) -> None:
    entry = yaml.safe_load((MEASUREMENTS_DIR / "published-amd-vllm.yaml").read_text())["measurements"][0]
    broken = dict(entry, gpu_count=7)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"measurements": [broken]}))
    with pytest.raises(AimError) as caught:
        load_measurements(tmp_path)
    assert "\n" not in str(caught.value) and "multiple of tp" in str(caught.value)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"measurements": [entry]}))
    (tmp_path / "twice.yaml").write_text(yaml.safe_dump({"measurements": [entry]}))
    with pytest.raises(AimError, match="is also in"):
        load_measurements(tmp_path)
    online = dict(entry, id="x", mode="online", concurrency=None)
    (tmp_path / "twice.yaml").write_text(yaml.safe_dump({"measurements": [online]}))
    with pytest.raises(AimError, match="needs concurrency"):
        load_measurements(tmp_path)
