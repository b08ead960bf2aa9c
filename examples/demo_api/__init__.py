"""The demo API of the README walk-through: a plain WSGI app protected by authserver_rs."""

from .app import Config, DemoApi, create_app

__all__ = ["Config", "DemoApi", "create_app"]
