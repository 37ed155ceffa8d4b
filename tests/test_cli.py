"""The moontrek command line."""

import csv
import json

import cv2
import numpy as np
import pytest

from moontrek.batch import CSV_COLUMNS, find_pairs
from moontrek.cli import main, make_parser
from moontrek.synthetic import encode, make_pair, render_moon


class TestCli:
    def test_register_prints_the_result(self, tmp_path, moon_pair, capsys):
        """`moontrek register USER MODEL -a ORB` prints the homography as JSON."""
        user, model = tmp_path / "user.png", tmp_path / "model.png"
        user.write_bytes(encode(moon_pair.user))
        model.write_bytes(encode(moon_pair.model))
        assert main(["register", str(user), str(model), "-a", "orb", "-p", "classic"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert len(printed["homography_matrix"]) == 3 and printed["algorithm"] == "ORB"

    def test_register_failure_is_a_message(self, tmp_path, capsys):
        """A file that is not an image gives a one-line message and exit 1."""
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"nope")
        assert main(["register", str(bad), str(bad)]) == 1
        assert "not an image" in capsys.readouterr().err

    def test_serve_with_bad_config(self, tmp_path, capsys):
        """`moontrek serve` with a bad config exits 2 naming the file and key."""
        config = tmp_path / "config.py"
        config.write_text('CONFIG = {"default_rate_limits": ["often"]}\n')
        assert main(["serve", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert str(config) in err and "default_rate_limits" in err

    def test_serve_options(self):
        """serve takes --host, --port, --config and --threads."""
        args = make_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "80", "--threads", "8"])
        assert (args.host, args.port, args.threads) == ("0.0.0.0", 80, 8)
        with pytest.raises(SystemExit):
            make_parser().parse_args(["serve", "--port", "eighty"])


# -- overlay, detect, batch ----------------------------------------------------------

@pytest.fixture(scope="module")
def model_image():
    return render_moon(500, seed=5)


@pytest.fixture
def pair_folder(tmp_path, model_image):
    """A folder of two good pairs (one with a layer, one JPEG, one in the demo
    data's naming) and one whose photo is text."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    portrait = make_pair(model_image, angle=30.0, scale=0.8, user_size=(420, 600))
    landscape = make_pair(model_image, angle=140.0, scale=0.8, user_size=(600, 430))
    (folder / "tall-user.jpg").write_bytes(encode(portrait.user, ".jpg", 92))
    (folder / "tall-model.png").write_bytes(encode(model_image))
    layer = np.zeros((500, 500, 4), np.uint8)
    cv2.circle(layer, (250, 250), 120, (0, 0, 255, 255), 4)
    (folder / "tall-layer.png").write_bytes(encode(layer))
    (folder / "01-userImage.png").write_bytes(encode(landscape.user))
    (folder / "01-modelImage.png").write_bytes(encode(model_image))
    (folder / "broken-user.png").write_bytes(b"this is text, not a photo")
    (folder / "broken-model.png").write_bytes(encode(model_image))
    (folder / "notes.txt").write_text("not a pair")
    return folder


def read_jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestFindPairs:
    def test_names(self, pair_folder):
        """NAME-user/-model/-layer and NN-userImage/-modelImage are paired by
        name; other files are ignored; sorted by name."""
        pairs, incomplete = find_pairs(pair_folder)
        assert [pair.name for pair in pairs] == ["01", "broken", "tall"]
        assert pairs[2].layer.name == "tall-layer.png" and pairs[0].layer is None
        assert incomplete == []

    def test_incomplete_and_ambiguous(self, tmp_path):
        """A photo without a model is reported; two photos for one name are an error."""
        from moontrek.batch import PairError

        (tmp_path / "a-user.png").write_bytes(b"x")
        assert find_pairs(tmp_path) == ([], ["a"])
        (tmp_path / "a-user.jpg").write_bytes(b"x")
        with pytest.raises(PairError, match="two user files"):
            find_pairs(tmp_path)


class TestBatch:
    def test_json_lines_to_stdout(self, pair_folder, capsys):
        """One record per pair and algorithm on stdout, in order; exit 1
        because one pair failed; the failure says why."""
        assert main(["batch", str(pair_folder), "-a", "sift", "-a", "ORB", "--jobs", "2"]) == 1
        out, err = capsys.readouterr()
        records = read_jsonl(out)
        assert [(r["name"], r["algorithm"]) for r in records] == [
            ("01", "SIFT"), ("01", "ORB"), ("broken", "SIFT"), ("broken", "ORB"), ("tall", "SIFT"), ("tall", "ORB")]
        good = [r for r in records if r["name"] != "broken"]
        assert all(r["ok"] and len(r["homography_matrix"]) == 3 and r["inliers"] > 10 and r["ms"] > 0 for r in good)
        broken = [r for r in records if r["name"] == "broken"]
        assert all(not r["ok"] and "not an image" in r["error"] and "homography_matrix" not in r for r in broken)
        # Not a terminal: one plain line per record on stderr.
        assert err.count("\n") == 6 and "[6/6]" in err and "broken SIFT failed" in err

    def test_all_registered_is_exit_0(self, pair_folder, tmp_path):
        """Exit 0 when every pair registers; --out writes JSON Lines there;
        the homography is right."""
        (pair_folder / "broken-user.png").unlink()
        out = tmp_path / "records.jsonl"
        assert main(["batch", str(pair_folder), "--out", str(out), "--jobs", "1"]) == 0
        records = read_jsonl(out.read_text())
        assert [r["name"] for r in records] == ["01", "tall"]
        assert all(r["algorithm"] == "SIFT" and r["ok"] for r in records)

    def test_csv_and_overlays(self, pair_folder, tmp_path):
        """--out FILE.csv writes CSV with fixed columns; --overlays writes
        each overlay PNG at the photo's size (the layer when there is one)."""
        out, overlays = tmp_path / "records.csv", tmp_path / "overlays"
        assert main(["batch", str(pair_folder), "-o", str(out), "--overlays", str(overlays), "-a", "orb"]) == 1
        with open(out, newline="") as file:
            rows = list(csv.DictReader(file))
        assert list(rows[0]) == CSV_COLUMNS
        assert [(row["name"], row["ok"]) for row in rows] == [("01", "True"), ("broken", "False"), ("tall", "True")]
        tall = rows[2]
        assert float(tall["h22"]) == pytest.approx(1.0) and int(tall["inliers"]) > 10
        assert "not an image" in rows[1]["error"] and rows[1]["h00"] == ""
        written = sorted(path.name for path in overlays.iterdir())
        assert written == ["01-ORB.png", "tall-ORB.png"]
        tall_overlay = cv2.imread(str(overlays / "tall-ORB.png"))
        assert tall_overlay.shape == (600, 420, 3)
        red = (tall_overlay[:, :, 2].astype(int) - tall_overlay[:, :, 1]) > 150
        assert red.sum() > 500  # the layer's red ring was drawn

    def test_usage_errors_are_exit_2(self, tmp_path, capsys):
        """No pairs in the folder, a missing folder, an unknown algorithm or
        --jobs 0: exit 2 with a message."""
        (tmp_path / "readme.txt").write_text("nothing here")
        assert main(["batch", str(tmp_path)]) == 2
        assert "no pairs in" in capsys.readouterr().err
        assert main(["batch", str(tmp_path / "absent")]) == 2
        assert "is not a folder" in capsys.readouterr().err
        (tmp_path / "a-user.png").write_bytes(b"x")
        (tmp_path / "a-model.png").write_bytes(b"x")
        assert main(["batch", str(tmp_path), "--overlays", str(tmp_path / "readme.txt")]) == 2
        assert "--overlays" in capsys.readouterr().err
        for argv in (["batch", str(tmp_path), "-a", "FAST"], ["batch", str(tmp_path), "--jobs", "0"]):
            with pytest.raises(SystemExit) as exc:
                main(argv)
            assert exc.value.code == 2

    def test_progress_bar_on_a_terminal(self, pair_folder, tmp_path):
        """On a terminal, stderr gets rich's progress bar (counts), stdout
        stays the records."""
        import io

        from moontrek.progress import batch_progress

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        stream = Terminal()
        records = [{"name": "a", "algorithm": "SIFT", "ok": True, "inliers": 5, "ms": 3.0},
                   {"name": "b", "algorithm": "SIFT", "ok": False, "error": "No Moon", "ms": 2.0}]
        with batch_progress(2, stream) as progress:
            for record in records:
                progress.advance(record)
        text = stream.getvalue()
        assert "2/2" in text and "1 failed" in text and "b SIFT failed" in text


class TestOverlayCommand:
    def test_overlay_with_layer(self, pair_folder, tmp_path, capsys):
        """`moontrek overlay PHOTO MODEL LAYER -o OUT.png` writes the overlay
        at the photo's size and prints the registration."""
        out = tmp_path / "overlay.png"
        assert main(["overlay", str(pair_folder / "tall-user.jpg"), str(pair_folder / "tall-model.png"),
                     str(pair_folder / "tall-layer.png"), "-o", str(out), "-a", "orb"]) == 0
        assert cv2.imread(str(out)).shape == (600, 420, 3)
        printed = json.loads(capsys.readouterr().out)
        assert printed["algorithm"] == "ORB" and printed["out"] == str(out)

    @pytest.mark.parametrize("view,suffix,shape", [("matches", ".png", (430, 600 + 430)), ("blend", ".jpg", (430, 430))])
    def test_views(self, pair_folder, tmp_path, view, suffix, shape):
        """--view matches and blend; a .jpg name writes JPEG."""
        out = tmp_path / f"view{suffix}"
        assert main(["overlay", str(pair_folder / "01-userImage.png"), str(pair_folder / "01-modelImage.png"),
                     "-o", str(out), "--view", view]) == 0
        assert out.read_bytes().startswith(b"\xff\xd8" if suffix == ".jpg" else b"\x89PNG")
        assert cv2.imread(str(out)).shape[:2] == shape

    def test_failure(self, pair_folder, tmp_path, capsys):
        """A photo that is not an image: exit 1 with the message; nothing written."""
        out = tmp_path / "overlay.png"
        assert main(["overlay", str(pair_folder / "broken-user.png"), str(pair_folder / "broken-model.png"),
                     "-o", str(out)]) == 1
        assert "not an image" in capsys.readouterr().err and not out.exists()
        with pytest.raises(SystemExit):
            main(["overlay", "a.png", "b.png", "-o", str(out), "--transparency", "2"])


class TestDetectCommand:
    def test_detect_prints_the_circle(self, tmp_path, model_image, capsys):
        """`moontrek detect PHOTO` prints {"circle": {x, y, radius}}."""
        photo = tmp_path / "photo.png"
        photo.write_bytes(encode(model_image))
        assert main(["detect", str(photo)]) == 0
        circle = json.loads(capsys.readouterr().out)["circle"]
        assert circle["x"] == pytest.approx(250, abs=5) and circle["radius"] == pytest.approx(230, rel=0.05)

    def test_no_moon(self, tmp_path, capsys):
        """A blank photo: exit 1, 'No Moon'."""
        photo = tmp_path / "blank.png"
        photo.write_bytes(encode(np.zeros((200, 300, 3), np.uint8)))
        assert main(["detect", str(photo)]) == 1
        assert "No Moon" in capsys.readouterr().err
