"""E-mail folders (one sub-folder per label) read into a TextDataset: MIME, charsets, mbox."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest

from elbokit.data.email import EmailDataset, html_to_text, read_email_folder
from elbokit.errors import DataError

PDF = b"%PDF-1.4\nSECRET-PDF-PAYLOAD\n%%EOF\n"


def message(subject: str | None, body: str | None = None, **content) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = "alice@example.org", "bob@example.org"
    if subject is not None:
        msg["Subject"] = subject
    if body is not None:
        msg.set_content(body, **content)
    return msg


def undecodable_part(payload: bytes, charset: str) -> EmailMessage:
    """A text/plain part declaring ``charset`` over ``payload`` (base64, so any bytes survive)."""
    part = EmailMessage()
    part.set_content(payload, maintype="text", subtype="plain", cte="base64")
    part.set_param("charset", charset)
    return part


def write(path: Path, msg: EmailMessage | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msg if isinstance(msg, bytes) else bytes(msg))


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    root = tmp_path / "mail"
    write(root / "ham" / "01_plain.eml", message("Lunch on Friday", "See you at noon.\n"))

    alternative = message("Meeting notes", "Plain version.\n")
    alternative.add_alternative("<p>HTML version</p>", subtype="html")
    write(root / "ham" / "02_alternative.eml", alternative)

    invoice = message("Your invoice", "The invoice is attached.\n")
    invoice.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    write(root / "ham" / "03_invoice", invoice)  # no extension: still one message

    write(root / "ham" / "04_qp.eml", message("Prix spécial", "Café crème, naïve façade\n",
                                               cte="quoted-printable"))
    write(root / "ham" / "05_b64.eml", message("Grüße", "Viele Grüße aus Köln\n",
                                                charset="iso-8859-1", cte="base64"))
    write(root / "ham" / ".DS_Store", b"\x00\x01 not mail")  # hidden: ignored silently
    write(root / "README.txt", b"my mail export\n")  # not in a label folder: reported

    html = message("You won!", None)
    html.set_content("<html><head><style>p {color: red}</style>"
                     "<script>var x = '<b>evil</b>';</script></head>"
                     "<body><!-- tracking --><p>WIN &pound;1000 &amp; a <b>FREE</b>&nbsp;cruise"
                     "</p><p>Click&#33;</p></body></html>", subtype="html")
    write(root / "spam" / "10_html.eml", html)

    (root / "spam").mkdir(exist_ok=True)
    box = mailbox.mbox(root / "spam" / "20_archive", create=True)  # no suffix: "From " line
    box.add(message("Cheap pills", "Buy now.\n"))
    box.add(message("Hot stocks", "Invest today.\n"))
    box.close()

    bad_charset = message("Mixed bag", "Good part.\n")
    bad_charset.make_mixed()
    bad_charset.attach(undecodable_part(b"\xff\xfe bad", "x-unknown"))
    write(root / "spam" / "30_badcharset.eml", bad_charset)

    write(root / "spam" / "31_invalid.eml",  # no subject; its only part is not UTF-8
          b"From: alice@example.org\nTo: bob@example.org\nContent-Type: text/plain; charset=utf-8\n"
          b"Content-Transfer-Encoding: 8bit\n\nabc \xff\xfe\n")
    return root


def test_texts_labels_and_problems(mail):
    seen: list[str] = []
    data = read_email_folder(mail, on_problem=seen.append)
    assert isinstance(data, EmailDataset)
    assert data.texts == [
        "Lunch on Friday\nSee you at noon.",
        "Meeting notes\nPlain version.",
        "Your invoice\nThe invoice is attached.",
        "Prix spécial\nCafé crème, naïve façade",
        "Grüße\nViele Grüße aus Köln",
        "You won!\nWIN £1000 & a FREE cruise Click!",
        "Cheap pills\nBuy now.",
        "Hot stocks\nInvest today.",
        "Mixed bag\nGood part.",
    ]
    assert data.labels.tolist() == ["ham"] * 5 + ["spam"] * 4
    assert data.classes == ["ham", "spam"] and data.counts == {"ham": 5, "spam": 4}
    assert not any("SECRET" in t or "PDF" in t or "evil" in t or "color" in t for t in data.texts)
    assert data.problems == [
        "README.txt: not in a label folder: ignored",
        "spam/30_badcharset.eml: part 2 (text/plain, charset x-unknown) could not be decoded "
        "(unknown charset): skipped",
        "spam/31_invalid.eml: part 1 (text/plain, charset utf-8) could not be decoded "
        "(invalid utf-8 bytes at byte 4): skipped",
        "spam/31_invalid.eml: no text (no subject and no readable text part): skipped",
    ]
    assert seen == data.problems
    assert data.source == str(mail)
    assert data.description == f"e-mail folder {mail}: 9 messages, ham 5 / spam 4; 4 problems (see .problems)"
    assert "\n" not in data.description
    assert read_email_folder(mail).texts == data.texts  # deterministic


def test_alternative_falls_back_to_html_and_mbox_messages_are_numbered(tmp_path):
    alt = message("Offer", "placeholder\n")
    alt.add_alternative("<div>Big<br>sale</div>", subtype="html")
    alt.get_payload()[0] = undecodable_part(b"\xe9t\xe9", "utf-8")  # plain part: latin-1 bytes
    write(tmp_path / "spam" / "alt.eml", alt)
    (tmp_path / "ham").mkdir()
    box = mailbox.mbox(tmp_path / "ham" / "inbox.mbox", create=True)
    box.add(message("Hi", "Hello.\n"))
    box.add(b"From: x@example.org\nContent-Type: image/png\n\n\x89PNG")
    box.close()
    data = read_email_folder(tmp_path)
    assert data.texts == ["Hi\nHello.", "Offer\nBig sale"]
    assert data.problems == [
        "ham/inbox.mbox: message 2: no text (no subject and no readable text part): skipped",
        "spam/alt.eml: part 1 (text/plain, charset utf-8) could not be decoded "
        "(invalid utf-8 bytes at byte 0): skipped",
    ]


def test_html_to_text():
    assert html_to_text("<p>a</p><p>b<b>c</b></p><style>x</style>&lt;tag&gt;\n\t d") == "a bc <tag> d"


def _one_good(root: Path, label: str) -> None:
    write(root / label / "m.eml", message("Hello", "Body.\n"))


@pytest.mark.parametrize("setup, target, expected", [
    (lambda r: None, "missing", "no such folder"),
    (lambda r: write(r / "file.eml", message("x", "y")), "file.eml", "not a folder"),
    (lambda r: write(r / "d" / "only.eml", message("x", "y")), "d", "no label sub-folders"),
    (lambda r: [(r / "d" / n).mkdir(parents=True) for n in ("ham", "spam")], "d",
     r"no readable e-mail messages at all \(label folders: ham, spam\)"),
    (lambda r: (_one_good(r / "d", "ham"), write(r / "d" / "spam" / "notes.txt", b"just text\n")),
     "d", r"no readable e-mail messages in label folder spam \(1 skipped; first: "
          r"spam/notes.txt: not an e-mail message"),
    (lambda r: (_one_good(r / "d", "ham"), write(r / "d" / "spam" / "empty.eml", b"")), "d",
     "in label folder spam .*empty file"),
    (lambda r: _one_good(r / "d", "ham"), "d", r"only one label \(ham\); .*at least two"),
])
def test_folder_errors_name_the_path(tmp_path, setup, target, expected):
    setup(tmp_path)
    with pytest.raises(DataError, match=expected) as info:
        read_email_folder(tmp_path / target)
    assert str(tmp_path / target) in str(info.value) and "\n" not in str(info.value)
