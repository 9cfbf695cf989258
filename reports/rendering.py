"""The Jinja2 environment every PV Trace document is rendered with (autoescaped HTML)."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


def fmt_num(value, digits: int = 2) -> str:
    """A statistic for a table: '–' when undefined (null, or not computed in this run), fixed digits otherwise."""
    if value is None or isinstance(value, jinja2.Undefined) or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def fmt_ci(lo, hi, digits: int = 2) -> str:
    if lo is None or hi is None or isinstance(lo, jinja2.Undefined) or isinstance(hi, jinja2.Undefined):
        return "–"
    return f"{fmt_num(lo, digits)}–{fmt_num(hi, digits)}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["ci"] = fmt_ci
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
