"""Imported persona and dialogue metadata (EdgeWisePersona routines, session context) as short text."""

from __future__ import annotations

import html


def _pairs(d: dict) -> str:
    return ", ".join(f"{k} {v}" if not isinstance(v, dict) else f"{k}: {_pairs(v)}"
                     for k, v in d.items() if v is not None)


def meta_html(meta: dict) -> str:
    """A persona's routines (``when … → …``) and any other metadata, one line each."""
    if not meta:
        return ""
    out = []
    routines = meta.get("routines") or []
    if routines:
        out.append(f"<p><b>Routines ({len(routines)})</b></p><ol start='0'>")
        for r in routines:
            when = _pairs(r.get("triggers") or {}) or "always"
            out.append(f"<li>when {html.escape(when)} → {html.escape(_pairs(r.get('actions') or {}))}</li>")
        out.append("</ol>")
    rest = {k: v for k, v in meta.items() if k != "routines"}
    if rest:
        out.append(f"<p style='color:#555'>{html.escape(_pairs(rest))}</p>")
    return "".join(out)


def dialogue_meta_text(meta: dict) -> str:
    """A session's context and applied routines, e.g. ``evening, weekend, rainy · routines 0, 2``."""
    if not meta:
        return ""
    parts = []
    context = meta.get("context")
    if isinstance(context, dict):
        parts.append(", ".join(str(v) for v in context.values() if v is not None))
    applied = meta.get("applied_routines")
    if applied:
        parts.append("routines " + ", ".join(str(i) for i in applied))
    if meta.get("system"):
        parts.append(f"system: {meta['system']}")
    return " · ".join(p for p in parts if p)
