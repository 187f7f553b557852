"""A folder of e-mails, one sub-folder per label, as a :class:`~elbokit.data.text.TextDataset`.

Layout::

    mail/
      ham/    one message per file (``.eml`` or any name) and/or mbox files
      spam/   ...

Each sub-folder's name is the label of every message found under it (nested folders, such as
a Maildir's ``cur/`` and ``new/``, are searched too). A file is read as an mbox when its name
ends in ``.mbox`` or its first line starts with ``From ``; otherwise it is one RFC 822 message.
Hidden files and folders (names starting with ``.``) are ignored; everything is read in sorted
path order, so the same folder always gives the same data set.

The text of a message is its Subject, a newline, then its body text (see
:func:`message_text`). Parts and files that cannot be used are skipped and reported (see
:func:`read_email_folder`); a folder that cannot give a two-class data set raises
:class:`~elbokit.errors.DataError` naming the path.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from ..errors import DataError
from .text import TextDataset


@dataclass
class EmailDataset(TextDataset):
    """A :class:`TextDataset` read from an e-mail folder, plus ``problems``: one line per file,
    message or MIME part that was skipped (``"spam/x.eml: part 2 (...) could not be decoded
    (...): skipped"``), in reading order."""

    problems: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Messages per label, labels sorted."""
        return {c: int((self.labels == c).sum()) for c in self.classes}


# -- HTML -> text ----------------------------------------------------------------------------

# Tags that end a line or block in a browser: without a space there, "<p>a</p><p>b</p>" would
# read as the one word "ab". Inline tags (<b>, <span>, <a>) add nothing, so "<b>F</b>REE" stays
# one word.
_BLOCK_TAGS = frozenset("""address article aside blockquote br dd div dl dt fieldset figcaption
    figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody td
    tfoot th thead title tr ul""".split())
_HIDDEN_TAGS = frozenset(("script", "style"))  # content is code, not text anyone reads


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities (&amp; &#163; &nbsp;) arrive decoded
        self.chunks: list[str] = []
        self.hidden = 0  # depth inside <script>/<style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:  # <br/>; a self-closed <script/> has no content to hide
            self.chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)  # a stray </script> must not go negative
        elif tag in _BLOCK_TAGS:
            self.chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document on one line: tags and comments removed, the
    content of ``<script>`` and ``<style>`` dropped, entities unescaped, runs of whitespace
    (``&nbsp;`` included) collapsed to one space."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.chunks).split())


# -- one message -----------------------------------------------------------------------------

class _Skip(Exception):
    """A file or message that cannot be used; the message says why."""


def _decode(part: Message, section: str) -> str:
    """The text of a leaf ``text/*`` part in its declared charset (transfer encoding undone)."""
    declared = part.get_content_charset()
    # No charset parameter means US-ASCII (RFC 2046); UTF-8 reads ASCII the same and also the
    # undeclared 8-bit UTF-8 that many mailers send.
    charset = declared or "utf-8"
    what = f"part {section} ({part.get_content_type()}, charset {declared or 'not declared'})"
    payload = part.get_payload(decode=True)  # base64 / quoted-printable undone; bytes
    if payload is None:
        payload = b""
    try:
        text = payload.decode(charset)
    except LookupError:  # also codecs that are not text encodings ("rot13", "hex")
        raise _Skip(f"{what} could not be decoded (unknown charset): skipped") from None
    except UnicodeDecodeError as e:
        raise _Skip(f"{what} could not be decoded (invalid {charset} bytes at byte {e.start}): "
                    "skipped") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _collect(part: Message, section: str, report: Callable[[str], None]
             ) -> list[tuple[str, str]]:
    """``(subtype, text)`` for the readable text parts under ``part``: ``("plain", ...)`` and
    ``("html", ...)`` (already reduced to text); attachments and non-text parts give none."""
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "multipart":
        children = list(part.iter_parts())
        numbered = [(child, f"{section}.{i}" if section else str(i))
                    for i, child in enumerate(children, start=1)]
        if subtype != "alternative":  # mixed, related, signed, ...: every piece counts
            return [t for child, sec in numbered for t in _collect(child, sec, report)]
        # The alternatives say the same thing: take text/plain when it decodes, else the others
        # from the last (RFC 2046 puts the richest last), so one bad part has a fallback.
        plain = [(c, s) for c, s in numbered if c.get_content_type() == "text/plain"]
        rest = [(c, s) for c, s in reversed(numbered) if c.get_content_type() != "text/plain"]
        for child, sec in plain + rest:
            found = _collect(child, sec, report)
            if found:
                return found
        return []
    # message/rfc822 (a forwarded mail), images, PDFs, ...: not this message's own text.
    if maintype != "text" or subtype not in ("plain", "html"):
        return []
    if part.get_content_disposition() == "attachment":  # an attached .txt/.html file
        return []
    try:
        text = _decode(part, section or "1")
    except _Skip as e:
        report(str(e))
        return []
    if subtype == "html":
        text = html_to_text(text)
    text = text.strip()
    return [(subtype, text)] if text else []


def message_text(message: Message, report: Callable[[str], None] | None = None) -> str:
    """``Subject + "\\n" + body`` of a parsed message (empty string when it has neither).

    The body is the message's ``text/plain`` parts, joined by newlines; in a
    ``multipart/alternative`` the ``text/plain`` version is preferred. HTML parts count only
    when the message has no plain text, reduced by :func:`html_to_text`. Attachments
    (``Content-Disposition: attachment``) and non-text parts are ignored. A text part whose
    declared charset is unknown or does not fit its bytes is passed to ``report`` (a line
    naming the part, e.g. ``part 2 (text/plain, charset x-unknown) could not be decoded
    (unknown charset): skipped``) and left out.

    Parts are numbered as in IMAP: the children of a multipart message are ``1``, ``2``, ...,
    their children ``1.1``, ``1.2``, ...; a single-part message's body is ``1``.
    """
    found = _collect(message, "", report or (lambda _: None))
    plain = [t for kind, t in found if kind == "plain"]
    body = "\n".join(plain or [t for kind, t in found if kind == "html"])
    # str() of the header decodes RFC 2047 words ("=?utf-8?q?...?="); folding is undone here.
    subject = " ".join(str(message.get("Subject", "")).split())
    return f"{subject}\n{body}" if subject or body else ""


def _parse(raw: bytes, where: str, report: Callable[[str], None]) -> str:
    """The text of one raw message; ``_Skip`` when there is none to use."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM (Windows editors) would hide the headers
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if not message.keys():
            # Any mail has headers; without them this is some other file (a README, a PDF).
            raise _Skip(f"{where}: not an e-mail message (no header lines): skipped")
        text = message_text(message, lambda problem: report(f"{where}: {problem}"))
    except _Skip:
        raise
    except Exception as e:  # the email package still raises on some malformed headers/MIME
        raise _Skip(f"{where}: could not be parsed ({type(e).__name__}: {e}): skipped") from None
    if not text.strip():
        raise _Skip(f"{where}: no text (no subject and no readable text part): skipped")
    return text


def _is_mbox(path: Path) -> bool:
    if path.suffix.lower() == ".mbox":
        return True
    with path.open("rb") as f:
        return f.read(5) == b"From "  # the mbox separator line; an RFC 822 header has a colon


def _read_file(path: Path, where: str, report: Callable[[str], None]) -> list[str]:
    """The texts of the messages in one file (one, or all of an mbox); problems reported."""
    texts: list[str] = []
    try:
        if path.stat().st_size == 0:
            raise _Skip(f"{where}: empty file: skipped")
        if not _is_mbox(path):
            return [_parse(path.read_bytes(), where, report)]
        box = mailbox.mbox(path, create=False)
        try:
            keys = list(box.iterkeys())  # file order
            if not keys:
                raise _Skip(f"{where}: mbox with no messages: skipped")
            for number, key in enumerate(keys, start=1):
                try:
                    texts.append(_parse(box.get_bytes(key), f"{where}: message {number}", report))
                except _Skip as e:  # one bad message does not lose the rest of the mbox
                    report(str(e))
        finally:
            box.close()
    except _Skip as e:
        report(str(e))
    except OSError as e:
        report(f"{where}: cannot read ({e.strerror or e}): skipped")
    return texts


# -- the folder ------------------------------------------------------------------------------

def _visible_files(folder: Path) -> list[Path]:
    """Files under ``folder`` at any depth, hidden ones (or in hidden folders) left out, sorted
    by their path parts so the order does not depend on the file system."""
    found = [p for p in folder.rglob("*")
             if p.is_file() and not any(n.startswith(".") for n in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def read_email_folder(path: str | Path, on_problem: Callable[[str], None] | None = None
                      ) -> EmailDataset:
    """Read ``path/<label>/...`` e-mails into an :class:`EmailDataset` (texts and labels).

    See the module docstring for the layout and :func:`message_text` for what text is taken.
    Files that are empty, unreadable, not e-mail (no headers) or give no text, and MIME parts
    that cannot be decoded, are skipped; each is described on one line (naming the file
    relative to ``path``) in ``dataset.problems`` and, when given, passed to ``on_problem``
    as it happens. Non-hidden files directly in ``path`` (not in a label folder) are reported
    as ignored. ``dataset.description`` is a one-line summary with counts per label.

    Raises :class:`DataError` when ``path`` is missing or not a folder, has no label
    sub-folders, has no messages at all, has a label folder with no readable message, or has
    fewer than two labels.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one sub-folder of e-mails per label)")
    problems: list[str] = []

    def report(problem: str) -> None:
        problems.append(problem)
        if on_problem is not None:
            on_problem(problem)

    entries = sorted((p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for stray in (p for p in entries if not p.is_dir()):
        report(f"{stray.name}: not in a label folder: ignored")
    label_dirs = [p for p in entries if p.is_dir()]
    if not label_dirs:
        raise DataError(f"{root}: no label sub-folders (expected e.g. {root}/ham and {root}/spam, "
                        "each holding e-mails)")

    texts: list[str] = []
    labels: list[str] = []
    counts: dict[str, int] = {}
    for folder in label_dirs:
        found = [t for file in _visible_files(folder)
                 for t in _read_file(file, str(file.relative_to(root)), report)]
        texts += found
        labels += [folder.name] * len(found)
        counts[folder.name] = len(found)

    hint = f" ({len(problems)} skipped; first: {problems[0]})" if problems else ""
    if not texts:
        raise DataError(f"{root}: no readable e-mail messages at all (label folders: "
                        f"{', '.join(counts)}){hint}")
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{root}: no readable e-mail messages in label folder"
                        f"{'s' if len(empty) > 1 else ''} {', '.join(empty)}{hint}")
    if len(counts) < 2:
        raise DataError(f"{root}: only one label ({label_dirs[0].name}); a classifier needs "
                        "at least two label sub-folders (e.g. ham and spam)")

    shown = " / ".join(f"{name} {n:,}" for name, n in counts.items())
    skipped = f"; {len(problems)} problem{'s' if len(problems) != 1 else ''} (see .problems)" \
        if problems else ""
    return EmailDataset(texts=texts, labels=np.array(labels), source=str(root),
                        description=f"e-mail folder {root}: {len(texts):,} messages, "
                                    f"{shown}{skipped}",
                        problems=problems)
