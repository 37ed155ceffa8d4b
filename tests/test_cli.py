"""The moontrek command line."""

import json

import pytest

from moontrek.cli import main, make_parser
from moontrek.synthetic import encode


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
