"""The ``moontrek`` command: ``serve`` the API, or ``register`` two files."""

import argparse
import json
import sys

from . import __version__
from .config import ConfigError, load_config, validate_config
from .logs import LogSetupError
from .registration import ALGORITHM_NAMES, PIPELINES, RegistrationError, register

__all__ = ["make_parser", "main"]


def make_parser():
    parser = argparse.ArgumentParser(prog="moontrek", description="The Moon-Trek registration server.")
    parser.add_argument("--version", action="version", version=f"moontrek {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API under waitress")
    serve.add_argument("--config", help="config file (default: $MOONTREK_CONFIG, else config/config.py, else built-in)")
    serve.add_argument("--host", help="address to listen on (overrides the config)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides the config)")
    serve.add_argument("--threads", type=int, help="waitress worker threads (overrides the config)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the socket, Linux (overrides the config)")

    reg = commands.add_parser("register", help="register a photo onto a model render and print the result")
    reg.add_argument("user_file", help="the photo of the Moon")
    reg.add_argument("model_file", help="the model render")
    reg.add_argument("-a", "--algorithm", default="SIFT", type=str.upper, choices=ALGORITHM_NAMES)
    reg.add_argument("-p", "--pipeline", choices=sorted(PIPELINES), help="registration pipeline")
    return parser


def _serve(args):
    from .server import serve

    config = load_config(args.config)
    overrides = {key: getattr(args, key) for key in ("host", "port", "threads", "workers")
                 if getattr(args, key) is not None}
    if overrides:
        # Checked again: an option can make the config unusable (--workers 2
        # with memory:// rate limits).
        config = validate_config({**config, **overrides}, source="the config with the command-line options")
    serve(config)
    return 0


def _register(args):
    with open(args.user_file, "rb") as user, open(args.model_file, "rb") as model:
        result = register(user.read(), model.read(), args.algorithm, pipeline=args.pipeline)
    print(json.dumps({"homography_matrix": result.homography_list(), **result.summary()}, indent=2))
    return 0


def main(argv=None):
    args = make_parser().parse_args(argv)
    try:
        return _serve(args) if args.command == "serve" else _register(args)
    except (ConfigError, LogSetupError) as exc:
        print(f"moontrek: configuration error: {exc}", file=sys.stderr)
        return 2
    except RegistrationError as exc:
        print(f"moontrek: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"moontrek: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
