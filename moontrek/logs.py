"""Logging set up once at start: the console and a rotating file."""

import logging
import logging.handlers
from pathlib import Path

__all__ = ["LOGGER_NAME", "configure_logging", "LogSetupError"]

LOGGER_NAME = "moontrek"
# The process id tells the lines of `serve --workers N`'s processes apart.
_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class LogSetupError(Exception):
    """The log file cannot be opened for writing."""


def configure_logging(config, rotate=True):
    """Send the ``moontrek`` logger to the console and to ``log_filepath``.

    With ``rotate`` False (the worker processes of ``serve --workers``) the
    file is appended to and reopened when it is rotated away: one process,
    the supervisor, rotates it, since processes rotating one file each on
    their own would lose lines.

    Calling it again (tests build many apps) replaces the handlers instead of
    stacking them, and closes the files they held.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(config["logging_level"])
    # The root logger may have its own handlers (pytest's, waitress's): ours
    # are complete, so do not print every line twice.
    logger.propagate = False
    formatter = logging.Formatter(_FORMAT)

    console = logging.StreamHandler()
    console.setFormatter(formatter)
    logger.addHandler(console)

    path = Path(config["log_filepath"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if rotate:
            file_handler = logging.handlers.RotatingFileHandler(
                path,
                maxBytes=config["log_max_bytes"],
                backupCount=config["log_backup_count"],
                encoding="utf-8",
            )
        else:
            file_handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise LogSetupError(f"log_filepath {str(path)!r} cannot be written: {exc.strerror or exc}.") from exc
    file_handler.setFormatter(formatter)
    logger.addHandler(file_handler)
    return logger
