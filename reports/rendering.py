"""The Jinja2 environments PV Trace documents are rendered with: autoescaped HTML, and Typst source for PDFs.

In a Typst template every ``{{ value }}`` is escaped for Typst markup (each ASCII punctuation character
gets a backslash, so a value can never open a heading, a list, a function call or a comment);
``|tstr`` gives a Typst string literal for code mode and ``|raw`` passes Typst source through.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import jinja2
import markupsafe

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


# every ASCII punctuation character: each has (or may get) a meaning in Typst markup, and "\\" + char is its literal
_TYPST_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def typst_escape(value) -> str:
    """A value as literal Typst markup text (a number too: "-12" would become "−12"); ``|raw`` passes through."""
    if isinstance(value, markupsafe.Markup):
        return str(value)
    text = str(value)
    return _TYPST_SPECIAL.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def typst_string(value) -> markupsafe.Markup:
    """A Typst string literal (code mode), e.g. for a chart label."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
    return markupsafe.Markup(f'"{text}"')


@lru_cache(maxsize=1)
def typst_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        finalize=typst_escape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["ci"] = fmt_ci
    env.filters["tstr"] = typst_string
    env.filters["raw"] = markupsafe.Markup
    return env


def render_typst(template: str, **context) -> str:
    return typst_environment().get_template(template).render(**context)
