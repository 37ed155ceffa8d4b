"""Loading and checking the configuration."""

from pathlib import Path

import pytest

from moontrek.config import DEFAULTS, ConfigError, load_config, validate_config
from moontrek.logs import LogSetupError, configure_logging

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "config.py"
    path.write_text(text, encoding="utf-8")
    return path


class TestLoading:
    def test_embedded_defaults_without_a_file(self, tmp_path, monkeypatch):
        """With no --config, no $MOONTREK_CONFIG and no config/config.py, the
        built-in defaults apply, so a fresh machine starts."""
        monkeypatch.chdir(tmp_path)
        assert load_config(environ={}) == DEFAULTS

    def test_file_is_executed_and_merged_over_defaults(self, tmp_path):
        """CONFIG from the file wins; keys it leaves out keep their defaults."""
        path = write(tmp_path, 'CONFIG = {"logging_level": "debug", "default_rate_limits": ["5/minute"]}\n')
        config = load_config(path)
        assert config["logging_level"] == "DEBUG"
        assert config["default_rate_limits"] == ["5/minute"]
        assert config["max_upload_bytes"] == DEFAULTS["max_upload_bytes"]

    def test_environment_variable(self, tmp_path):
        """$MOONTREK_CONFIG names the file when no path is given."""
        path = write(tmp_path, 'CONFIG = {"port": 8123}\n')
        assert load_config(environ={"MOONTREK_CONFIG": str(path)})["port"] == 8123

    def test_config_folder_in_working_directory(self, tmp_path, monkeypatch):
        """config/config.py in the working directory is read by default."""
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.py").write_text('CONFIG = {"threads": 2}\n')
        monkeypatch.chdir(tmp_path)
        assert load_config(environ={})["threads"] == 2

    @pytest.mark.parametrize("name", ["config.py.template", "config.py.docker"])
    def test_shipped_templates_are_valid(self, name):
        """The templates shipped in config/ load without error."""
        config = load_config(ROOT / "config" / name)
        assert config["default_rate_limits"] == ["20 per day"]


class TestErrors:
    @pytest.mark.parametrize(
        "text,fragments",
        [
            ('CONFIG = {"log_path": "x"}', ["'log_path'", "unknown key"]),
            ('CONFIG = {"default_rate_limits": ["twenty a day"]}', ["default_rate_limits", "twenty a day"]),
            ('CONFIG = {"default_rate_limits": "20 per day"}', ["default_rate_limits", "list"]),
            ('CONFIG = {"logging_level": "LOUD"}', ["logging_level"]),
            ('CONFIG = {"port": "80"}', ["port"]),
            ('CONFIG = {"threads": 0}', ["threads"]),
            ('CONFIG = {"surf_processes": -1}', ["surf_processes", "integer >= 0"]),
            ('CONFIG = {"surf_enabled": "yes"}', ["surf_enabled"]),
            ('CONFIG = {"rate_limit_strategy": "leaky"}', ["rate_limit_strategy"]),
            ('CONFIG = {"rate_limit_storage_uri": "ftp://x"}', ["rate_limit_storage_uri"]),
            ('CONFIG = {"cors_allow_origins": 5}', ["cors_allow_origins"]),
            ('CONFIG = {"default_pipeline": "magic"}', ["default_pipeline"]),
            ("CONFIG = [1]", ["must be a dict"]),
            ("SETTINGS = {}", ["CONFIG"]),
            ("CONFIG = {", ["could not be executed"]),
        ],
    )
    def test_bad_config_names_file_and_key(self, tmp_path, text, fragments):
        """A bad config stops start-up with a message naming the file and the key."""
        path = write(tmp_path, text + "\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(path) in str(info.value)
        for fragment in fragments:
            assert fragment in str(info.value)

    def test_missing_file(self, tmp_path):
        """A config path that does not exist is an error, not a silent default."""
        with pytest.raises(ConfigError, match="does not exist"):
            load_config(tmp_path / "nope.py")

    def test_unwritable_log_path(self, tmp_path):
        """A log path that cannot be written stops start-up with a clear message."""
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        config = validate_config({"log_filepath": str(blocker / "moontrek.log")})
        with pytest.raises(LogSetupError, match="log_filepath"):
            configure_logging(config)


class TestLogFile:
    def test_rotation_by_size_and_count(self, make_config, tmp_path):
        """The log rotates at log_max_bytes and keeps log_backup_count old files."""
        import falcon.testing

        from moontrek.app import create_app

        config = make_config(log_max_bytes=2000, log_backup_count=2)
        client = falcon.testing.TestClient(create_app(config))
        for _ in range(100):
            client.simulate_get("/api/health")
        folder = Path(config["log_filepath"]).parent
        names = sorted(path.name for path in folder.iterdir())
        assert names == ["moontrek.log", "moontrek.log.1", "moontrek.log.2"]
        assert all(path.stat().st_size <= 2000 + 500 for path in folder.iterdir())

    def test_start_up_lines(self, make_config):
        """Start-up logs the effective config, with a storage password masked,
        and the algorithms served."""
        from moontrek.app import create_app

        config = make_config(rate_limit_storage_uri="redis://:s3cret@127.0.0.1:6399/0")
        create_app(config)
        log = Path(config["log_filepath"]).read_text()
        assert "effective config" in log and "redis://***@127.0.0.1:6399/0" in log and "s3cret" not in log
        assert "algorithms: SIFT (opencv)" in log

    def test_serve_refuses_an_unwritable_log_path(self, tmp_path, capsys):
        """`moontrek serve` with a log path that cannot be written exits 2
        with a message naming the path."""
        from moontrek.cli import main

        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        config = tmp_path / "config.py"
        config.write_text(f"CONFIG = {{'log_filepath': {str(blocker / 'x.log')!r}}}\n")
        assert main(["serve", "--config", str(config)]) == 2
        assert "log_filepath" in capsys.readouterr().err
