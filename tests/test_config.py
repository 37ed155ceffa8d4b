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
