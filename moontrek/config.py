"""Loading and checking the server's configuration.

A config file is Python that defines ``CONFIG = {...}``; it is executed into a
fresh namespace and only that name is read. Keys left out take the defaults
below, so a fresh machine with no file at all still starts.
"""

import ipaddress
import os
import runpy
from pathlib import Path

import limits
import limits.storage
import limits.strategies

from .registration import DEFAULT_PIPELINE, PIPELINES

__all__ = ["DEFAULTS", "KEYS", "ConfigError", "default_config_path", "load_config", "redacted", "validate_config"]

ENV_VAR = "MOONTREK_CONFIG"
DEFAULT_CONFIG_PATH = Path("config") / "config.py"
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# name: (default, description). The README's configuration table mirrors this.
KEYS = {
    "log_filepath": ("logs/moontrek.log", "File the log is written to (rotated); its folder is created."),
    "logging_level": ("INFO", "One of DEBUG, INFO, WARNING, ERROR, CRITICAL."),
    "default_rate_limits": (["20 per day"], "`limits` strings applied per client address to registration routes."),
    "log_max_bytes": (10 * 1024 * 1024, "Size at which the log file is rotated."),
    "log_backup_count": (5, "How many rotated log files are kept."),
    "rate_limit_storage_uri": ("memory://", "Where rate-limit counters live: memory:// or redis://host:port/db."),
    "rate_limit_strategy": ("fixed-window", "fixed-window, moving-window or sliding-window-counter."),
    "rate_limit_fail_open": (True, "When the rate-limit storage is unreachable: serve anyway (True) or answer 503."),
    "trusted_proxies": ([], "Addresses or networks of reverse proxies whose X-Forwarded-For is believed."),
    "cors_allow_origins": ("*", "Origins browsers may call from: \"*\" or a list of origins."),
    "max_upload_bytes": (32 * 1024 * 1024, "Largest request body accepted (413 above it)."),
    "max_image_pixels": (50_000_000, "Largest image, in pixels, that is decoded (413 above it)."),
    "surf_enabled": (True, "Serve SURF; set False where its patent is a concern."),
    "default_pipeline": (DEFAULT_PIPELINE, "Registration pipeline when a request names none (`?pipeline=`)."),
    "host": ("127.0.0.1", "Address `moontrek serve` listens on."),
    "port": (5000, "Port `moontrek serve` listens on."),
    "threads": (4, "Waitress worker threads."),
    "max_concurrent_registrations": (os.cpu_count() or 1, "Registrations run at once; more wait."),
    "registration_wait_seconds": (10.0, "How long a registration may wait for a slot before 503."),
    "opencv_threads": (1, "Threads OpenCV may use inside one registration (0: OpenCV's default)."),
    "parallel_sides": (True, "A registration running alone prepares the photo and the model on two threads."),
    "workers": (1, "Processes `moontrek serve` runs, sharing one listening socket (Linux)."),
    "surf_processes": (
        (os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0,
        "Worker processes our SURF runs on beside `moontrek serve`'s threads (0: in the request's thread).",
    ),
    "metrics_enabled": (True, "Serve Prometheus metrics at GET /api/metrics."),
}
DEFAULTS = {name: default for name, (default, _) in KEYS.items()}


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and key."""


def default_config_path(environ=None):
    """The config file to read: $MOONTREK_CONFIG, else config/config.py if it
    exists, else None (embedded defaults)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_config(path=None, environ=None):
    """Return the checked configuration from ``path`` (or the default place),
    with defaults for the keys it leaves out."""
    path = Path(path) if path is not None else default_config_path(environ)
    if path is None:
        return validate_config({}, source="embedded defaults")
    if not path.is_file():
        raise ConfigError(f"{path}: the config file does not exist.")
    try:
        namespace = runpy.run_path(str(path), run_name="moontrek_config")
    except Exception as exc:
        raise ConfigError(f"{path}: the config file could not be executed: {exc}") from exc
    if "CONFIG" not in namespace:
        raise ConfigError(f"{path}: the file must define CONFIG = {{...}}.")
    return validate_config(namespace["CONFIG"], source=str(path))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check(source, key, ok, expected):
    if not ok:
        raise ConfigError(f"{source}: key {key!r} must be {expected}.")


def validate_config(raw, source="config"):
    """Merge ``raw`` over the defaults and check every key; raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: CONFIG must be a dict, not {type(raw).__name__}.")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; known keys are {', '.join(KEYS)}.")
    config = {**DEFAULTS, **raw}

    for key in ("log_filepath", "rate_limit_storage_uri", "host"):
        _check(source, key, isinstance(config[key], str) and config[key], "a non-empty string")
    for key, low in (("log_max_bytes", 1), ("log_backup_count", 0), ("max_upload_bytes", 1),
                     ("max_image_pixels", 1), ("threads", 1), ("max_concurrent_registrations", 1),
                     ("opencv_threads", 0), ("workers", 1), ("surf_processes", 0)):
        _check(source, key, _is_int(config[key]) and config[key] >= low, f"an integer >= {low}")
    _check(source, "port", _is_int(config["port"]) and 0 <= config["port"] <= 65535, "a port number 0-65535")
    for key in ("surf_enabled", "rate_limit_fail_open", "metrics_enabled", "parallel_sides"):
        _check(source, key, isinstance(config[key], bool), "True or False")
    wait = config["registration_wait_seconds"]
    _check(source, "registration_wait_seconds",
           isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait >= 0, "a number of seconds >= 0")
    proxies = config["trusted_proxies"]
    _check(source, "trusted_proxies", isinstance(proxies, (list, tuple)) and all(isinstance(p, str) for p in proxies),
           'a list of addresses or networks such as ["127.0.0.1", "10.0.0.0/8"]')
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"{source}: key 'trusted_proxies' has {proxy!r}, which is not an address or network.") from None
    config["trusted_proxies"] = list(proxies)

    level = config["logging_level"]
    _check(source, "logging_level", isinstance(level, str) and level.upper() in LOGGING_LEVELS,
           f"one of {', '.join(LOGGING_LEVELS)}")
    config["logging_level"] = level.upper()

    rates = config["default_rate_limits"]
    _check(source, "default_rate_limits", isinstance(rates, (list, tuple)) and all(isinstance(r, str) for r in rates),
           'a list of rate strings such as ["20 per day"]')
    for rate in rates:
        try:
            limits.parse_many(rate)
        except ValueError:
            raise ConfigError(
                f"{source}: key 'default_rate_limits' has {rate!r}, which is not a rate string "
                "(examples: \"20 per day\", \"5/minute\", \"100 per hour; 10 per minute\")."
            ) from None
    config["default_rate_limits"] = list(rates)

    strategy = config["rate_limit_strategy"]
    _check(source, "rate_limit_strategy", strategy in limits.strategies.STRATEGIES,
           f"one of {', '.join(sorted(limits.strategies.STRATEGIES))}")
    uri = config["rate_limit_storage_uri"]
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    _check(source, "rate_limit_storage_uri", scheme in limits.storage.SCHEMES,
           "a storage URI such as memory:// or redis://localhost:6379/0")

    origins = config["cors_allow_origins"]
    _check(source, "cors_allow_origins",
           origins == "*" or (isinstance(origins, (list, tuple)) and all(isinstance(o, str) for o in origins)),
           '"*" or a list of origins such as ["https://moon-trek.jpl.nasa.gov"]')
    pipeline = config["default_pipeline"]
    _check(source, "default_pipeline", pipeline in PIPELINES, f"one of {', '.join(sorted(PIPELINES))}")
    if config["workers"] > 1 and config["default_rate_limits"] and scheme == "memory":
        # Each process would count on its own: a client would get N budgets.
        raise ConfigError(
            f"{source}: key 'workers' is {config['workers']}, but rate limits kept in memory:// are per process, "
            "so each client would get one budget per worker: set 'rate_limit_storage_uri' to a shared storage "
            "such as redis://localhost:6379/0, or run one worker."
        )
    return config


def redacted(config):
    """The config with secrets (a password in the storage URI) masked, for logs."""
    shown = dict(config)
    scheme, _, rest = shown["rate_limit_storage_uri"].partition("://")
    if "@" in rest:
        shown["rate_limit_storage_uri"] = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return shown
