"""AppTest of the model page: every checkpoint renders (training command, loss curves, held-out
reconstructions, confusion matrix when there is a class head), and the quality table lists every
checkpoint plus the pixel baseline with exactly the figures of `python -m galaxy_vae evaluate --json`."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from apptest import open_page
from conftest import ROOT

PER_CLASS = 3  # validation galaxies the page shows per class


def checkpoint_paths():
    """What the sidebar offers: the app's checkpoint folder, the default first."""
    from galaxy_vae.checkpoints import list_checkpoints

    return list_checkpoints()


@pytest.fixture
def at(sample_path):
    assert checkpoint_paths(), "checkpoints/ holds no checkpoint"
    return open_page("model_quality", timeout=900)  # the first run evaluates every checkpoint


@pytest.fixture
def table(at):
    return at.dataframe[0].value  # index: checkpoint file name or "pixel baseline"


def cli_evaluate(path, sample_path, pixel: bool) -> dict:
    cmd = [sys.executable, "-m", "galaxy_vae", "evaluate", "--data", str(sample_path), "--checkpoint", str(path),
           "--json"] + ([] if pixel else ["--no-pixel"])
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout)


def test_model_quality_renders_the_selected_checkpoint(at, sample):
    from galaxy_vae.checkpoints import read_meta

    assert not at.error
    name = at.session_state["model"]
    assert name == checkpoint_paths()[0].name  # the default checkpoint
    meta = read_meta(checkpoint_paths()[0])
    if meta.get("command"):
        assert at.code[0].value == meta["command"]
    assert {"Reconstructions", "Retrieval quality of every checkpoint"} <= {h.value for h in at.header}
    assert "Elliptical is 70%" in " ".join(m.value for m in at.markdown)
    assert "Spiral CW and Spiral ACW as one class" in " ".join(m.value for m in at.markdown)
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert any("loss_curves" in c for c in charts)


def test_model_quality_every_checkpoint_shows_reconstructions_and_head(at, sample):
    """Every checkpoint in the folder renders; the confusion matrix appears exactly when there is a head."""
    from galaxy_vae.checkpoints import list_checkpoints, load_checkpoint
    from galaxy_vae.quality import has_class_head

    class_of = dict(zip(sample.ids, sample.labels))
    heads = []
    for path in list_checkpoints(generative=True):  # what the sidebar's model choice offers
        at = open_page("model_quality", model=path.name, timeout=900)
        captions = [c for img in at.image for c in img.captions]
        assert len(captions) == 2 * PER_CLASS * len(sample.class_names), path.name
        assert captions[1::2] == ["reconstruction"] * (len(captions) // 2)
        originals = [int(class_of[c.split(" · ")[0]]) for c in captions[::2]]
        assert originals == sorted(originals)  # real galaxies, grouped by class in class order
        charts = [c.proto.id for c in at.get("plotly_chart")]
        heads.append(has_class_head(load_checkpoint(path)))
        assert any("confusion" in c for c in charts) == heads[-1], path.name
        assert any("no classifier head" in i.value for i in at.info) != heads[-1], path.name


def test_model_quality_table_lists_every_checkpoint_and_the_pixel_baseline(table):
    assert list(table.index) == [p.name for p in checkpoint_paths()] + ["pixel baseline"]
    figures = table[["precision_at_10", "macro_precision_at_10", "precision_at_10_morph",
                     "macro_precision_at_10_morph"]].to_numpy()
    assert ((figures > 0) & (figures <= 1)).all()
    assert (table["macro_precision_at_10_morph"] >= table["macro_precision_at_10"] - 1e-12).all()


def test_model_quality_table_equals_evaluate_cli(table, sample_path):
    """Same numbers as `python -m galaxy_vae evaluate --json`: the default checkpoint with the pixel
    baseline, every other checkpoint without it (the baseline does not depend on the model)."""
    metrics = ["precision_at_10", "macro_precision_at_10", "precision_at_10_morph",
               "macro_precision_at_10_morph", "recon_mse"]
    for i, path in enumerate(checkpoint_paths()):
        cli = cli_evaluate(path, sample_path, pixel=i == 0)
        row = table.loc[path.name]
        assert row["model"] == cli["model"] and row["n_val"] == cli["n_val"]
        for m in metrics:
            if m not in cli:  # the galaxy encoder reconstructs nothing: no recon_mse, an empty cell
                assert m == "recon_mse" and pd.isna(row[m]), (path.name, m)
                continue
            assert row[m] == pytest.approx(cli[m], rel=1e-6, abs=1e-9), (path.name, m)
        if i == 0:
            pixel = table.loc["pixel baseline"]
            for m in metrics[:-1]:
                assert pixel[m] == pytest.approx(cli[f"pixel_{m}"], rel=1e-6, abs=1e-9), m


def test_model_quality_measures_realism_on_request(sample_path, monkeypatch):
    """The realism table appears after the button, with the W1 of each set and the baseline ratios."""
    from galaxy_vae.app import cache

    monkeypatch.setattr(cache, "REALISM_N", 16)  # a small measurement: what is tested is the wiring
    at = open_page("model_quality", timeout=900)
    assert "Press *Measure realism*" in " ".join(i.value for i in at.info)
    at.button(key="measure_realism").click().run(timeout=900)
    assert not at.exception and not at.error
    realism = [d.value for d in at.dataframe if d.value.index.name == "set"]
    assert len(realism) == 2  # the W1 table and the ratios
    w1, ratios = realism
    assert list(w1.index) == ["real vs real (baseline)", "reconstructions", "samples (details from the prior)"]
    assert list(ratios.index) == list(w1.index[1:])
    assert (w1.loc["samples (details from the prior)"] >= 0).all()
    assert list(w1.columns) == ["gini", "m20", "concentration", "asymmetry", "smoothness"]
    assert any("statmorph flags" in c.value for c in at.caption)
    assert any("realism_histograms" in c.proto.id for c in at.get("plotly_chart"))
