"""The ``moontrek`` command: ``serve`` the API, ``register`` two files, draw
an ``overlay``, ``detect`` the Moon, or ``batch`` a folder of pairs."""

import argparse
import json
import os
import sys

from . import __version__
from .config import ConfigError, load_config, validate_config
from .logs import LogSetupError
from .registration import ALGORITHM_NAMES, PIPELINES, RegistrationError, register
from .registration import decode_image, register_images
from .registration.drawing import VIEWS

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
    _add_tool_commands(commands)
    return parser


def _add_tool_commands(commands):
    """The overlay, detect and batch subcommands."""
    algorithm = {"type": str.upper, "choices": ALGORITHM_NAMES, "metavar": "ALGORITHM",
                 "help": f"one of {', '.join(ALGORITHM_NAMES)} (default SIFT)"}
    pipeline = {"choices": sorted(PIPELINES), "help": "registration pipeline"}

    overlay = commands.add_parser("overlay", help="register a photo and draw the layers (or the model) over it")
    overlay.add_argument("user_file", metavar="PHOTO", help="the photo of the Moon")
    overlay.add_argument("model_file", metavar="MODEL", help="the model render")
    overlay.add_argument("layer_files", metavar="LAYER", nargs="*",
                         help="map layers in the render's frame, drawn in order")
    overlay.add_argument("-o", "--out", required=True, help="image to write (.png, or .jpg/.jpeg for JPEG)")
    overlay.add_argument("-a", "--algorithm", default="SIFT", **algorithm)
    overlay.add_argument("-p", "--pipeline", **pipeline)
    overlay.add_argument("--view", default=VIEWS[0], choices=VIEWS, help="what to draw (default overlay)")
    overlay.add_argument("-t", "--transparency", type=_transparencies, default=[1.0],
                         help="0 to 1, one value or one per layer separated by commas (default 1)")

    detect = commands.add_parser("detect", help="find the Moon's disk in a photo and print it as JSON")
    detect.add_argument("image_file", metavar="PHOTO", help="the photo")

    batch = commands.add_parser(
        "batch",
        help="register every pair in a folder",
        description="Registers every pair in DIR, found by name: NAME-user.EXT with NAME-model.EXT and an optional "
        "NAME-layer.EXT, or the demo data's NN-userImage.png with NN-modelImage.png (and NN-layerImage.png). "
        "Writes one record per pair and algorithm: JSON Lines, or CSV when --out ends in .csv. "
        "Exit status 0 when every pair registered, 1 when any failed, 2 for usage errors.",
    )
    batch.add_argument("folder", metavar="DIR", help="the folder of pairs")
    batch.add_argument("-a", "--algorithm", dest="algorithms", action="append", **algorithm)
    batch.add_argument("-p", "--pipeline", **pipeline)
    batch.add_argument("-j", "--jobs", type=_positive, default=os.cpu_count() or 1,
                       help="pairs registered at once (default: the number of cores)")
    batch.add_argument("-o", "--out", help="file to write the records to (default: standard output)")
    batch.add_argument("--overlays", metavar="OUTDIR", help="also write each overlay as OUTDIR/NAME-ALGORITHM.png")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _transparencies(text):
    try:
        values = [float(piece) for piece in text.split(",")]
    except ValueError:
        values = [-1.0]
    if not all(0.0 <= value <= 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"must be numbers from 0 to 1 separated by commas, not {text!r}")
    return values


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


def _overlay(args):
    from .registration.drawing import draw_view, encode_image

    image_format = "jpeg" if args.out.lower().endswith((".jpg", ".jpeg")) else "png"
    user = _decode(args.user_file, "user-file")
    model = _decode(args.model_file, "model-file")
    layers = [_decode(path, f"layer-file {path}", keep_alpha=True) for path in args.layer_files] or None
    if len(args.transparency) not in (1, len(layers or [None])):
        print(f"moontrek overlay: {len(args.transparency)} transparency values for {len(layers or [None])} "
              "layer(s): give one, or one per layer", file=sys.stderr)
        return 2
    result = register_images(user, model, args.algorithm, pipeline=args.pipeline)
    image = draw_view(args.view, result, user, model, layers, args.transparency)
    with open(args.out, "wb") as out:
        out.write(encode_image(image, image_format))
    print(json.dumps({"homography_matrix": result.homography_list(), **result.summary(), "out": args.out}, indent=2))
    return 0


def _detect(args):
    from .registration.moon_pipeline import find_moon_on_limb

    circle = find_moon_on_limb(_decode(args.image_file, "image"))
    print(json.dumps({"circle": circle.as_dict()}))
    return 0


def _decode(path, field, **options):
    with open(path, "rb") as file:
        return decode_image(file.read(), field=field, **options)


def _batch(args):
    from .batch import PairError, find_pairs, run_batch, writer_for
    from .progress import batch_progress

    try:
        pairs, incomplete = find_pairs(args.folder)
    except PairError as exc:
        print(f"moontrek batch: {exc}", file=sys.stderr)
        return 2
    for name in incomplete:
        print(f"moontrek batch: {name!r} has no photo or no model file; skipped", file=sys.stderr)
    if not pairs:
        print(
            f"moontrek batch: no pairs in {args.folder}: expected NAME-user.EXT with NAME-model.EXT "
            "(or NN-userImage.png with NN-modelImage.png)",
            file=sys.stderr,
        )
        return 2
    if args.overlays:
        try:
            os.makedirs(args.overlays, exist_ok=True)
        except OSError as exc:
            print(f"moontrek batch: --overlays {args.overlays}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    algorithms = args.algorithms or ["SIFT"]
    failed = 0
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        writer = writer_for(args.out, out)
        records = run_batch(pairs, algorithms, jobs=args.jobs, pipeline=args.pipeline, overlays=args.overlays)
        with batch_progress(len(pairs) * len(algorithms), sys.stderr) as progress:
            for record in records:
                writer.write(record)
                failed += not record["ok"]
                progress.advance(record)
    finally:
        if out is not sys.stdout:
            out.close()
    return 1 if failed else 0


def main(argv=None):
    args = make_parser().parse_args(argv)
    commands = {"serve": _serve, "register": _register, "overlay": _overlay, "detect": _detect, "batch": _batch}
    try:
        return commands[args.command](args)
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
