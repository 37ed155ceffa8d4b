"""Serving the app with waitress (Linux, macOS and Windows alike)."""

import logging

import waitress

from .app import create_app

__all__ = ["serve"]

logger = logging.getLogger("moontrek.server")


def serve(config):
    """Run the app under waitress until interrupted."""
    app = create_app(config)
    logger.info(
        "moontrek listening on http://%s:%d with %d threads", config["host"], config["port"], config["threads"]
    )
    waitress.serve(
        app,
        host=config["host"],
        port=config["port"],
        threads=config["threads"],
        # waitress refuses larger bodies from their Content-Length before
        # reading them, and stops chunked ones as they pass the limit (it
        # refuses at >=, hence the +1: exactly the limit is allowed).
        max_request_body_size=config["max_upload_bytes"] + 1,
        ident="moontrek",
    )
