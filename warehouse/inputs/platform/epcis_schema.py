"""EPCIS 2.0 JSON Schema validation: ``jsonschema`` is the authority, a compiled predicate the fast path.

The GS1 schema (``EPCIS-JSON-Schema.json``, draft-07) and its modular sources
(``JSON-Schema/**``) are loaded into one :class:`referencing.Registry` keyed by their ``$id``;
any ``$ref`` outside it fails with :class:`referencing.exceptions.NoSuchResource` instead of
going to the network (jsonschema's default registry would fetch remote references).

Why a fast path: ``jsonschema`` walks this schema (``$ref`` lookups, ``propertyNames`` with
``anyOf`` per property, ``if``/``then`` per event type) at ~10 ms per event, ~75 ms for a
shipping event carrying 20–40 logger readings — 40 s for the 3.8k events of a scale-0.3 world.
:func:`compile_predicate` turns the same schema, once, into nested Python closures that only
answer *valid or not* (a few hundred µs per event). A document the predicate accepts is valid;
a document it rejects is re-validated by ``jsonschema``, whose errors (path + reason) are what
gets quarantined. The predicate refuses to compile a keyword it does not implement
(:class:`UnsupportedKeyword`), and then every document goes through ``jsonschema``.

The two formats the schema uses are asserted, as GS1's own ajv + ajv-formats set-up does:
``uri`` (an absolute URI: a scheme, a colon, no spaces — so a bare ``bizStep`` that is not a
CBV word, or an extension field without a namespace prefix, is invalid) and ``date-time``
(RFC 3339, a real calendar date and time). ``jsonschema``'s own checkers for these need
optional packages that are not installed, so :data:`FORMAT_CHECKER` brings small ones, and
the compiled predicate calls the same functions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError, relevance
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7

#: Where the GS1 schema is: ``EPCIS-JSON-Schema.json`` of a copy of GS1's EPCIS repository, with its
#: ``JSON-Schema/`` folder beside it. Not shipped with PV Trace: the licence file of GS1's repository
#: is a disclaimer under GS1's IP policy and grants no right to redistribute the schema files.
SCHEMA_ENV = "PVTRACE_EPCIS_SCHEMA"


def configured_schema() -> Path | None:
    """The schema named by ``PVTRACE_EPCIS_SCHEMA``, or None when the variable is not set.

    Nothing outside the configuration is looked at (no path relative to the checkout)."""
    value = os.environ.get(SCHEMA_ENV)
    return Path(value) if value else None


Predicate = Callable[[object], bool]


class UnsupportedKeyword(ValueError):
    """The schema uses a keyword the compiled predicate does not implement."""


def _no_network(uri: str):
    raise NoSuchResource(ref=uri)


def local_registry(schema_path: Path) -> Registry:
    """The schema and every modular sub-schema beside it (``JSON-Schema/**/*.json``), by ``$id``.

    The ``test`` folder is left out: its fixtures reuse the ``$id`` of real schemas.
    """
    resources = []
    paths = [schema_path, *sorted((schema_path.parent / "JSON-Schema").rglob("*.json"))]
    for p in paths:
        if "test" in p.relative_to(schema_path.parent).parts:
            continue
        contents = json.loads(p.read_text(encoding="utf-8"))
        uri = contents.get("$id") or p.resolve().as_uri()
        resources.append((uri, Resource.from_contents(contents, default_specification=DRAFT7)))
    return Registry(retrieve=_no_network).with_resources(resources)


# ---- formats -------------------------------------------------------------------------------

FORMAT_CHECKER = FormatChecker(formats=())
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$")


@FORMAT_CHECKER.checks("uri")
def is_uri(value) -> bool:
    return not isinstance(value, str) or _URI.match(value) is not None


@FORMAT_CHECKER.checks("date-time")
def is_date_time(value) -> bool:
    if not isinstance(value, str):
        return True
    m = _DATE_TIME.match(value)
    if m is None:
        return False
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    try:
        datetime(y, mo, d, h, mi, min(sec, 59))  # RFC 3339 allows a leap second :60
    except ValueError:
        return False
    return sec <= 60 and (m.group(7) is None or (int(m.group(7)) <= 23 and int(m.group(8)) <= 59))


# ---- the compiled predicate ---------------------------------------------------------------

_ANNOTATIONS = {
    "$id",
    "$schema",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "definitions",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_TYPES: dict[str, Predicate] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "number": _is_number,
    "integer": lambda x: (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer()),
}


def _json_equal(a, b) -> bool:
    """JSON equality as jsonschema defines it: booleans are not numbers, 1 == 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (_is_number(a) and _is_number(b) and a == b)


class _Compiler:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.compiled: dict[int, Predicate] = {}  # id(schema node) -> predicate (memo + recursion)

    def compile(self, node, resolver) -> Predicate:
        key = id(node)
        if key in self.compiled:
            return self.compiled[key]
        cell: list[Predicate] = []
        self.compiled[key] = lambda x: cell[0](x)  # placeholder for recursive references
        fn = self._build(node, resolver)
        cell.append(fn)
        self.compiled[key] = fn
        return fn

    def _build(self, node, resolver) -> Predicate:
        if node is True or node == {}:
            return lambda x: True
        if node is False:
            return lambda x: False
        if "$ref" in node:  # draft-07: siblings of $ref are ignored
            resolved = resolver.lookup(node["$ref"])
            return self.compile(resolved.contents, resolved.resolver)
        checks: list[Predicate] = []
        unknown = set(node) - _ANNOTATIONS - _KEYWORDS
        if unknown:
            raise UnsupportedKeyword(", ".join(sorted(unknown)))
        if "type" in node:
            kinds = [node["type"]] if isinstance(node["type"], str) else node["type"]
            tests = [_TYPES[k] for k in kinds]
            checks.append(tests[0] if len(tests) == 1 else (lambda x, t=tests: any(f(x) for f in t)))
        if "enum" in node:
            values = node["enum"]
            if all(isinstance(v, str) for v in values):
                allowed = frozenset(values)
                checks.append(lambda x: isinstance(x, str) and x in allowed)
            else:
                checks.append(lambda x: any(_json_equal(x, v) for v in values))
        if "const" in node:
            checks.append(lambda x, c=node["const"]: _json_equal(x, c))
        if "format" in node and node["format"] in FORMAT_CHECKER.checkers:
            conforms, _ = FORMAT_CHECKER.checkers[node["format"]]
            checks.append(conforms)
        if "pattern" in node:
            search = re.compile(node["pattern"]).search
            checks.append(lambda x: not isinstance(x, str) or search(x) is not None)
        for kw, op in (("minLength", ">="), ("maxLength", "<=")):
            if kw in node:
                n = node[kw]
                checks.append(
                    (lambda x, n=n: not isinstance(x, str) or len(x) >= n)
                    if op == ">="
                    else (lambda x, n=n: not isinstance(x, str) or len(x) <= n)
                )
        for kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if kw in node:
                b = node[kw]
                cmp = {
                    "minimum": lambda x, b=b: x >= b,
                    "maximum": lambda x, b=b: x <= b,
                    "exclusiveMinimum": lambda x, b=b: x > b,
                    "exclusiveMaximum": lambda x, b=b: x < b,
                }[kw]
                checks.append(lambda x, cmp=cmp: not _is_number(x) or cmp(x))
        if "required" in node:
            req = tuple(node["required"])
            checks.append(lambda x: not isinstance(x, dict) or all(k in x for k in req))
        if "minProperties" in node:
            checks.append(lambda x, n=node["minProperties"]: not isinstance(x, dict) or len(x) >= n)
        if "properties" in node or "additionalProperties" in node or "patternProperties" in node:
            props = {k: self.compile(v, resolver) for k, v in (node.get("properties") or {}).items()}
            patterns = [
                (re.compile(p).search, self.compile(v, resolver))
                for p, v in (node.get("patternProperties") or {}).items()
            ]
            additional = node.get("additionalProperties", True)
            extra = None if additional is True else self.compile(additional, resolver)
            items = list(props.items())

            def properties(x, items=items, props=props, patterns=patterns, extra=extra):
                if not isinstance(x, dict):
                    return True
                for k, f in items:
                    if k in x and not f(x[k]):
                        return False
                if patterns or extra is not None:
                    for k, v in x.items():
                        matched = k in props
                        for search, f in patterns:
                            if search(k):
                                matched = True
                                if not f(v):
                                    return False
                        if not matched and extra is not None and not extra(v):
                            return False
                return True

            checks.append(properties)
        if "propertyNames" in node:
            name_ok = self.compile(node["propertyNames"], resolver)
            seen: dict[str, bool] = {}  # a property name's validity never changes: memoise it

            def property_names(x, name_ok=name_ok, seen=seen):
                if not isinstance(x, dict):
                    return True
                for k in x:
                    ok = seen.get(k)
                    if ok is None:
                        ok = seen[k] = name_ok(k)
                    if not ok:
                        return False
                return True

            checks.append(property_names)
        if "items" in node:
            items_schema = node["items"]
            if isinstance(items_schema, list):
                fns = [self.compile(s, resolver) for s in items_schema]
                rest = self.compile(node.get("additionalItems", True), resolver)
                checks.append(
                    lambda x: (
                        not isinstance(x, list) or all((fns[i] if i < len(fns) else rest)(v) for i, v in enumerate(x))
                    )
                )
            else:
                each = self.compile(items_schema, resolver)
                checks.append(lambda x: not isinstance(x, list) or all(each(v) for v in x))
        if "contains" in node:
            has = self.compile(node["contains"], resolver)
            checks.append(lambda x: not isinstance(x, list) or any(has(v) for v in x))
        if "minItems" in node:
            checks.append(lambda x, n=node["minItems"]: not isinstance(x, list) or len(x) >= n)
        if "maxItems" in node:
            checks.append(lambda x, n=node["maxItems"]: not isinstance(x, list) or len(x) <= n)
        if node.get("uniqueItems"):

            def unique(x):
                if not isinstance(x, list):
                    return True
                return all(not _json_equal(x[i], x[j]) for i in range(len(x)) for j in range(i + 1, len(x)))

            checks.append(unique)
        if "allOf" in node:
            fns = [self.compile(s, resolver) for s in node["allOf"]]
            checks.append(lambda x, fns=fns: all(f(x) for f in fns))
        if "anyOf" in node:
            fns = [self.compile(s, resolver) for s in node["anyOf"]]
            checks.append(lambda x, fns=fns: any(f(x) for f in fns))
        if "oneOf" in node:
            fns = [self.compile(s, resolver) for s in node["oneOf"]]
            checks.append(lambda x, fns=fns: sum(1 for f in fns if f(x)) == 1)
        if "not" in node:
            neg = self.compile(node["not"], resolver)
            checks.append(lambda x: not neg(x))
        if "if" in node and ("then" in node or "else" in node):
            cond = self.compile(node["if"], resolver)
            then = self.compile(node.get("then", True), resolver)
            other = self.compile(node.get("else", True), resolver)
            checks.append(lambda x: then(x) if cond(x) else other(x))
        if not checks:
            return lambda x: True
        if len(checks) == 1:
            return checks[0]
        return lambda x, checks=tuple(checks): all(f(x) for f in checks)


_KEYWORDS = {
    "$ref",
    "format",
    "type",
    "enum",
    "const",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "required",
    "minProperties",
    "properties",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "items",
    "additionalItems",
    "contains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
}


def compile_predicate(schema: dict, registry: Registry) -> Predicate:
    """``schema`` as one function ``instance -> bool`` (raises UnsupportedKeyword if it cannot)."""
    resolver = registry.resolver(base_uri=schema.get("$id", ""))
    return _Compiler(registry).compile(schema, resolver)


# ---- what the loader calls ----------------------------------------------------------------


@dataclass(frozen=True)
class SchemaIssue:
    """One reason a document (``event_index`` None) or one of its events is invalid."""

    event_index: int | None
    path: str
    message: str

    def detail(self, limit: int = 400) -> str:
        text = f"{self.path}: {self.message}"
        return text if len(text) <= limit else text[: limit - 1] + "…"


def event_index(path: list) -> int | None:
    """The event an error path points into: ``epcisBody.eventList[i]`` of an EPCISDocument,
    ``epcisBody.queryResults.resultsBody.eventList[i]`` of an EPCISQueryDocument."""
    for k in range(len(path) - 1):
        if path[k] == "eventList" and isinstance(path[k + 1], int):
            return path[k + 1]
    return None


def json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


class EpcisValidator:
    """The compiled EPCIS validator: build once, then :meth:`issues` per document."""

    def __init__(self, schema_path: Path, *, fast: bool = True):
        self.schema_path = Path(schema_path)
        schema = json.loads(self.schema_path.read_text(encoding="utf-8"))
        self.registry = local_registry(self.schema_path)
        Draft7Validator.check_schema(schema)
        self.validator = Draft7Validator(schema, registry=self.registry, format_checker=FORMAT_CHECKER)
        self.predicate: Predicate | None = None
        if fast:
            try:
                self.predicate = compile_predicate(schema, self.registry)
            except UnsupportedKeyword:
                self.predicate = None

    def is_valid(self, doc) -> bool:
        if self.predicate is not None and self.predicate(doc):
            return True
        return self.validator.is_valid(doc)

    def issues(self, doc) -> list[SchemaIssue]:
        """Nothing when ``doc`` is valid; else the most relevant error per invalid event,
        or per document when the error is outside the event list."""
        if self.predicate is not None and self.predicate(doc):
            return []
        by_event: dict[int | None, list[ValidationError]] = {}
        for error in self.validator.iter_errors(doc):
            for leaf in _leaves(error):
                index = event_index(list(leaf.absolute_path))
                by_event.setdefault(index, []).append(leaf)
        issues = []
        for index, errors in sorted(by_event.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            best = min(errors, key=_rank)
            issues.append(SchemaIssue(index, json_path(best.absolute_path), _short(best)))
        return issues


#: a failed ``pattern``/``not`` is usually one branch of an anyOf; an ``enum``, ``type``,
#: ``required`` or ``format`` error at the same place says more
_WEAK = {"pattern", "not", "anyOf", "oneOf", "if", "then"}


def _rank(error: ValidationError):
    return (error.validator in _WEAK, -len(error.absolute_path), relevance(error))


def _leaves(error: ValidationError):
    """The innermost errors under anyOf/oneOf/allOf wrappers, so each names the event it is in.

    A wrapper's own message is the whole instance ("{...} is not valid under any of the given
    schemas"); its context holds what actually failed, with deeper paths."""
    if not error.context:
        yield error
        return
    deeper = [e for e in error.context if len(e.absolute_path) > len(error.absolute_path)]
    if deeper:
        for e in deeper:
            yield from _leaves(e)
    else:
        yield error


def _short(error: ValidationError) -> str:
    msg = error.message
    if len(msg) > 300:
        msg = f"{error.validator} failed ({json.dumps(error.validator_value)[:120]})"
    if "propertyNames" in error.absolute_schema_path:
        msg = f"property name {msg}"
    return msg


@lru_cache(maxsize=4)
def epcis_validator(schema_path: str) -> EpcisValidator:
    """One compiled validator per schema file per process."""
    return EpcisValidator(Path(schema_path))
