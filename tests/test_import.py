"""Import: a folder of real sample JPEGs plus an id,label CSV -> the canonical HDF5 file.

The folder is built in ``tmp_path`` from a few of the sample's own pictures, one corrupt file,
one cut-off JPEG and one picture the CSV does not label.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_DIR

from galaxy_vae.cli import main
from galaxy_vae.cutouts import galaxy10_cutout
from galaxy_vae.errors import DataError
from galaxy_vae.hdf5 import open_dataset
from galaxy_vae.images import decode_image
from galaxy_vae.importer import import_folder, read_labels

# Real sample galaxies (objID: Galaxy Zoo 1 class): two ellipticals, a clockwise spiral, an edge-on.
GOOD = {"588848901537202306": 0, "588848901532418163": 0}
NAMES = ("Elliptical", "Spiral CW", "Spiral ACW", "Edge-on")


@pytest.fixture(scope="module")
def good_ids() -> dict[str, int]:
    """Four labelled sample galaxies, classes 0, 0, 1, 3, taken from the sample's CSV."""
    rows = [line.split(",") for line in (SAMPLE_DIR / "smallCSV_class.csv").read_text().split()[1:]]
    labels = {objid: int(label) for objid, label in rows}
    ids = dict(GOOD)
    for wanted in (1, 3):
        ids.update({next(i for i, c in labels.items() if c == wanted): wanted})
    assert all(labels[i] == c for i, c in ids.items())
    return ids


@pytest.fixture()
def folder(tmp_path, good_ids) -> tuple[Path, Path]:
    """(picture folder, labels CSV) with four good pictures and three problem files."""
    pics = tmp_path / "pics"
    pics.mkdir()
    for objid in good_ids:
        shutil.copy(SAMPLE_DIR / "Imagenes" / f"{objid}.jpeg", pics)
    (pics / "1000.jpeg").write_bytes(b"\xff\xd8 definitely not a JPEG")  # corrupt, labelled
    whole = (SAMPLE_DIR / "Imagenes" / f"{next(iter(good_ids))}.jpeg").read_bytes()
    (pics / "1001.jpeg").write_bytes(whole[: len(whole) // 2])  # cut-off JPEG, labelled
    shutil.copy(SAMPLE_DIR / "Imagenes" / f"{next(iter(good_ids))}.jpeg", pics / "2000.jpeg")  # unlabelled
    (pics / "notes.txt").write_text("not a picture, ignored")
    csv = tmp_path / "labels.csv"
    rows = [f"{i},{c}" for i, c in good_ids.items()] + ["1000,1", "1001,2", "3000,0"]  # 3000: no file
    csv.write_text("id,label\n" + "\n".join(rows) + "\n")
    return pics, csv


def test_import_skips_bad_files_by_name_and_writes_the_rest(folder, good_ids, sample, tmp_path):
    pics, csv = folder
    out = tmp_path / "out" / "mine.h5"
    report = import_folder(pics, csv, out, NAMES, source="four test galaxies", workers=1, progress=False)
    assert report.written == 4
    assert sorted(name for name, _ in report.unreadable) == ["1000.jpeg", "1001.jpeg"]
    assert all(reason for _, reason in report.unreadable)  # each says why
    assert report.unlabelled == ["2000.jpeg"]
    assert report.missing == ["3000"]

    data = open_dataset(out)
    assert sorted(data.ids.tolist()) == sorted(good_ids)
    assert [good_ids[i] for i in data.ids] == data.labels.tolist()
    assert data.class_names == NAMES and data.source == "four test galaxies"
    # Same recipe as the sample: each imported galaxy equals its row in data/gz1_sample.h5.
    row = {objid: k for k, objid in enumerate(sample.ids)}
    assert np.array_equal(data.images, sample.images[[row[i] for i in data.ids]])
    first = galaxy10_cutout(decode_image(pics / f"{data.ids[0]}.jpeg"))
    assert np.array_equal(data.images[0], first)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine.h5"]  # no temporary left


def test_import_parallel_matches_serial(folder, tmp_path):
    pics, csv = folder
    serial = open_dataset(import_folder(pics, csv, tmp_path / "s.h5", NAMES, workers=1, progress=False).out)
    parallel = open_dataset(import_folder(pics, csv, tmp_path / "p.h5", NAMES, workers=2, progress=False).out)
    assert np.array_equal(serial.images, parallel.images)
    assert serial.ids.tolist() == parallel.ids.tolist()


def test_import_failure_keeps_previous_output_and_leaves_no_partial(folder, tmp_path):
    pics, csv = folder
    out = tmp_path / "mine.h5"
    import_folder(pics, csv, out, NAMES, workers=1, progress=False)
    before = out.read_bytes()
    # HDF5 cannot store a NUL inside a string: this fails while the file is being written.
    with pytest.raises(ValueError):
        import_folder(pics, csv, out, ("Elliptical\x00", *NAMES[1:]), workers=1, progress=False)
    assert out.read_bytes() == before
    # A folder where nothing can be read fails before writing anything.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "1000.jpeg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="at least one readable picture"):
        import_folder(broken, csv, out, NAMES, workers=1, progress=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "labels.csv", "mine.h5", "pics"]


def test_import_cli_lists_skipped_files(folder, tmp_path, capsys):
    pics, csv = folder
    out = tmp_path / "cli.h5"
    code = main(["import", str(pics), "--labels", str(csv), "--out", str(out), "--workers", "1",
                 "--class-names", *NAMES])
    assert code == 0
    captured = capsys.readouterr()
    assert "skipped unreadable 1000.jpeg" in captured.err
    assert "skipped unreadable 1001.jpeg" in captured.err
    assert "skipped unlabelled 2000.jpeg" in captured.err
    assert "wrote 4 galaxies" in captured.out
    assert len(open_dataset(out)) == 4


def test_import_too_few_class_names_is_refused(folder, tmp_path):
    pics, csv = folder
    with pytest.raises(DataError, match="4 class names"):
        import_folder(pics, csv, tmp_path / "x.h5", NAMES[:2], workers=1, progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_import_read_labels_header_blank_lines_and_errors(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("\ufeffOBJID,CLASS\n\n588848901537202306,0\n 42 , 3 \n")
    assert read_labels(good) == {"588848901537202306": 0, "42": 3}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n1,spiral\n")
    with pytest.raises(DataError, match="line 2"):
        read_labels(bad)
    with pytest.raises(DataError, match="no such file"):
        read_labels(tmp_path / "absent.csv")
