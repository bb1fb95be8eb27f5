"""The drawing and upload page at /."""
from __future__ import annotations

from flask import Blueprint, render_template

from web.config import NUM_CLASSES
from web.services import services

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return render_template("index.html", keys_required=bool(services().config.api_keys), max_top_k=NUM_CLASSES)
