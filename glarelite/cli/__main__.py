"""``python -m glarelite.cli``."""

from glarelite.cli import app

app(prog_name="glarelite")
