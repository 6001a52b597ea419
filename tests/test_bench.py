"""The benchmark command runs and reports every figure; timings themselves are not tested.

`python -m benchmarks --quick --json` runs once per module in a subprocess (about a minute on two busy cores):
it needs the sample and a checkpoint in checkpoints/ (the pages serve the app's default).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from benchmarks.bench import GOALS, KEYS, check_goals, format_table
from benchmarks.compute import GALAXY10, tile_dataset
from galaxy_vae.paths import encoder_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(sample_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", "--data", str(sample_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_bench_quick_reports_every_figure_or_why_not(report):
    skipped = report["skipped"]
    expected = {"epoch_s", "cold_start_s", "cold_start_sample_s", "slider_fragment_ms_p50", "slider_paint_ms_p50",
                "embed_ray_images_per_s", "map_240k_first_paint_s", "map_240k_click_s", "map_240k_rss_mb"}
    if encoder_checkpoint() is None:  # the encoder's upload search needs the shipped encoder
        expected.add("encoder_upload_search_ms_p50")
    assert set(skipped) == expected, skipped
    assert "--quick" in skipped["epoch_s"] and "--quick" in skipped["cold_start_s"]
    assert "--quick" in skipped["embed_ray_images_per_s"]
    assert "fragment" in skipped["slider_fragment_ms_p50"]
    for key, _, _ in KEYS:
        if key in skipped:
            assert key not in report, f"{key} is skipped but has a number"
        else:
            value = report[key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, (key, value)
    assert 0 < report["knn_1m_recall_at_10"] <= 1
    assert report["details"]["knn_1m_method"] == "hnsw" and report["details"]["knn_1m_dim"] == 64
    assert report["details"]["knn_1m_index_mb"] > 0 and report["details"]["embed_catalogue_s"] > 0
    assert report["fragment_speedup"] is None  # no fragment figure without the browser
    assert report["details"]["pages_generator_page_rerun_ms_p50"] == report["generator_rerun_ms_p50"] > 0


def test_bench_quick_says_what_it_ran_on(report):
    assert len(report["goals"]) == len(GOALS)
    for name, goal in report["goals"].items():  # a number is judged; a skipped figure is not
        assert (goal["value"] is None) == (goal["met"] is None), (name, goal)
        assert goal["met"] is None or isinstance(goal["met"], bool)
    assert report["goals"]["epoch_s <= 10"] == {"value": None, "met": None}
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1 and machine["python"] and machine["torch"]
    assert report["dataset"]["galaxies"] == GALAXY10 and report["dataset"]["tiled"]
    assert report["dataset"]["note"].startswith("tiled sample")
    assert report["details"]["pages_driver"].startswith("AppTest")


def test_bench_table_lists_figures_goals_and_skips(report):
    table = format_table(report)
    for key, _, _ in KEYS:
        assert key in table
    assert "skipped epoch_s: skipped with --quick" in table
    assert "tiled sample" in table and report["machine"]["cpu"] in table


def test_bench_tile_dataset_repeats_real_cutouts_rotated(sample):
    tiled = tile_dataset(sample, GALAXY10)
    n = len(sample)
    assert len(tiled) == GALAXY10 and tiled.images.shape[1:] == sample.images.shape[1:]
    assert len(set(tiled.ids)) == GALAXY10
    rows = np.arange(GALAXY10) % n
    assert np.array_equal(tiled.labels, sample.labels[rows])
    for i in (0, n - 1, n + 5, 2 * n + 7, GALAXY10 - 1):
        turns = i // n
        assert np.array_equal(tiled.images[i], np.rot90(sample.images[i % n], turns))
        assert tiled.ids[i] == (str(sample.ids[i % n]) if turns == 0 else f"{sample.ids[i % n]}#r{turns}")


def test_bench_check_goals_leaves_skipped_figures_undecided():
    goals = check_goals({"knn_ms_p50": 0.5, "slider_fragment_ms_p50": 25.0, "knn_1m_recall_at_10": 0.95})
    assert goals["knn_ms_p50 <= 1"]["met"] is True
    assert goals["slider_fragment_ms_p50 <= 20"]["met"] is False
    assert goals["knn_1m_recall_at_10 >= 0.95"]["met"] is True
    assert goals["epoch_s <= 10"] == {"value": None, "met": None}
