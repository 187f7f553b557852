"""HTML pieces shared by ``report.html`` (:mod:`elbokit.report`) and the notebook views of a
model and a run (``LatentModel._repr_html_``, ``Run._repr_html_``): escaping, numbers,
tables, inline PNG figures and the training log, built in one place.

Every string that did not come from elbokit's own code (file contents, parameters, paths,
column names) goes through :func:`esc`, which also defuses URL schemes, so a value never
becomes markup nor a link. Cells passed to :func:`table` are HTML already.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAINING_LOG_ROWS = 5  # the last epochs shown in the training-log table

_SCHEME = re.compile(r"(?i)\b(https?|ftp|file|javascript|data):")


def esc(value: Any) -> str:
    """``value`` as HTML text: escaped, with URL schemes defused (``http&#58;``), so a string
    from a file never becomes markup nor puts a URL into the page's source."""
    return _SCHEME.sub(r"\1&#58;", html.escape(str(value), quote=True))


def number(value: Any) -> float | None:
    """A JSON number as float; None for anything else (booleans, strings, null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (small ones keep two significant digits); 'n/a' when
    absent; anything else escaped as text."""
    found = number(value)
    if found is None:
        return "n/a" if value is None else esc(plain(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(found):
        return esc(found)
    if found != 0 and abs(found) < 0.5 * 10 ** -digits:
        return f"{found:.2g}"
    return f"{found:.{digits}f}"


def plain(value: Any) -> str:
    """A config value as text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def nested(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = (),
          row_classes: Sequence[str] | None = None, caption: str | None = None) -> str:
    """A table from HTML cells; ``numeric[i]``: right-align column i."""
    numeric = list(numeric) + [False] * (len(headers) - len(numeric))
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{caption}</caption>")
    out.append("<thead><tr>" + "".join(f'<th scope="col">{h}</th>' for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>"
                        for c, num in zip(row, numeric, strict=False))
        out.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def key_values(pairs: Iterable[tuple[str, Any]], marked: Sequence[str] = ()) -> str:
    """A two-column table of names and values (both escaped here); the names in ``marked``
    in bold (a parameter changed from its default)."""
    rows = []
    for k, v in pairs:
        name = f"<code>{esc(k)}</code>"
        rows.append(f'<tr><th scope="row">{f"<strong>{name}</strong>" if k in marked else name}'
                    f"</th><td>{esc(plain(v))}</td></tr>")
    if not rows:
        return '<p class="note">(none recorded)</p>'
    return "<table>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def png(path: Path) -> tuple[bytes, int | None, int | None] | None:
    """The bytes of a PNG file and its size in pixels, or None when it is not a readable PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    width = height = None
    if len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
    return data, width, height


def figure(path: Path, alt: str, caption: str, scale: float = 1.0) -> str | None:
    """A ``<figure>`` with the PNG at ``path`` inlined (``alt``, ``caption``: HTML), or None;
    shown at ``scale`` times its size in pixels."""
    found = png(path)
    if found is None:
        return None
    data, width, height = found
    size = (f' width="{round(width * scale)}" height="{round(height * scale)}"'
            if width and height else "")
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure>\n<img src="data:image/png;base64,{encoded}" alt="{alt}"{size}>\n'
            f"<figcaption>{caption}</figcaption>\n</figure>")


def training_log(records: Sequence[dict], source: str = "metrics.jsonl",
                 rows: int = TRAINING_LOG_ROWS) -> list[str]:
    """The training log of epoch records (metrics.jsonl's lines, a fitted model's
    ``history_``; EM's are iterations) as HTML: one line of facts (epochs, the best
    validation score and when, the seconds in all), then the last ``rows`` records as a
    table of the terms they hold (nats per example). ``records``: dicts, at least one;
    ``source``: where they come from, named above the table (HTML)."""
    step = "iteration" if "iteration" in records[-1] and "epoch" not in records[-1] else "epoch"
    metric = "elbo" if any(nested(r, part, "elbo") is not None
                           for r in records for part in ("train", "val")) else "log_likelihood"
    metric_name = "ELBO" if metric == "elbo" else "log-likelihood"
    last_step = records[-1].get(step)
    count = f"{esc(last_step)} {step}s" if number(last_step) is not None else f"{len(records)} records"
    if step == "iteration":  # EM counts from iteration 0, the initial state
        count = f"{len(records) - 1} EM iterations"
    facts = [f"{count} logged"]
    for part, what in (("val", "validation"), ("train", "training")):
        scored = [(r.get(step), v) for r in records if (v := number(nested(r, part, metric))) is not None]
        if scored:
            best_step, best = max(scored, key=lambda sv: sv[1])
            facts.append(f"best {what} {metric_name} {fmt(best)} nats at {step} {esc(best_step)}")
            break
    seconds = [s for r in records if (s := number(r.get("seconds"))) is not None]
    if seconds:
        facts.append(f"{sum(seconds):.1f} s of training in all")

    parts = [p for p in ("train", "val") if any(isinstance(r.get(p), dict) for r in records)]
    terms = [t for t in ("elbo", "reconstruction", "kl", "log_likelihood")
             if any(nested(r, p, t) is not None for r in records for p in parts)]
    names = {"elbo": "ELBO", "reconstruction": "reconstruction", "kl": "KL",
             "log_likelihood": "log-likelihood"}
    part_names = {"train": "train", "val": "validation"}
    headers = [step] + [f"{part_names[p]} {names[t]}" for p in parts for t in terms]
    tail = records[-rows:]
    cells = [[esc(plain(r.get(step)))] + [fmt(nested(r, p, t)) for p in parts for t in terms]
             for r in tail]
    return [f"<p>{'; '.join(facts)}.</p>",
            f'<p class="note">The last {len(tail)} lines of {source} (nats per example):</p>',
            table(headers, cells, numeric=[True] * len(headers))]
