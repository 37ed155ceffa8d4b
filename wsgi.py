"""WSGI entry point for any WSGI server: ``waitress-serve --listen=0.0.0.0:80 wsgi:app``.

The config comes from $MOONTREK_CONFIG, else config/config.py, else the
built-in defaults.
"""

from moontrek.app import create_app
from moontrek.config import load_config

app = create_app(load_config())
