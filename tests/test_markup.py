"""elbokit.markup: the HTML pieces of report.html and the notebook reprs (their pages are
tested in test_report.py, test_api.py and test_workflows.py)."""

from __future__ import annotations

import base64
import re

from elbokit import markup


def test_text_is_escaped_and_urls_defused():
    text = markup.esc("<b>x</b> & \"q\" 'a' http://e.org JavaScript:alert(1) data:x")
    assert text == ("&lt;b&gt;x&lt;/b&gt; &amp; &quot;q&quot; &#x27;a&#x27; http&#58;//e.org "
                    "JavaScript&#58;alert(1) data&#58;x")
    assert markup.key_values([("<k>", {"url": "ftp://h"}), ("plain", 1)], marked=["plain"]) == (
        '<table>\n<tbody>\n<tr><th scope="row"><code>&lt;k&gt;</code></th><td>{&quot;url&quot;: '
        '&quot;ftp&#58;//h&quot;}</td></tr>\n<tr><th scope="row"><strong><code>plain</code>'
        "</strong></th><td>1</td></tr>\n</tbody></table>")


def test_numbers():
    assert [markup.fmt(v) for v in (None, 3, -1.23456, 0.0001234, 0.0, float("inf"), True, "<x>")] \
        == ["n/a", "3", "-1.235", "0.00012", "0.000", "inf", "true", "&lt;x&gt;"]
    assert markup.number(True) is None and markup.number(2) == 2.0
    assert markup.nested({"a": {"b": 1}}, "a", "b") == 1 and markup.nested({"a": 1}, "a", "b") is None


def test_a_figure_is_the_png_inlined_at_its_size_or_scaled(tmp_path):
    png = markup.PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR" + (300).to_bytes(4, "big") \
        + (200).to_bytes(4, "big") + b"rest"
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "b.png").write_bytes(b"GIF89a")
    html = markup.figure(tmp_path / "a.png", "alt", "<em>cap</em>", scale=0.5)
    src = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(src) == png and 'width="150" height="100"' in html
    assert "<figcaption><em>cap</em></figcaption>" in html
    assert 'width="300" height="200"' in markup.figure(tmp_path / "a.png", "alt", "cap")
    assert markup.figure(tmp_path / "b.png", "", "") is None
    assert markup.figure(tmp_path / "absent.png", "", "") is None


def test_the_training_log_of_epochs_and_of_em_iterations():
    epochs = [{"epoch": e, "train": {"elbo": -10.0 + e, "kl": 1.0}, "val": {"elbo": v, "kl": 1.5},
               "seconds": 0.25} for e, v in ((1, -9.5), (2, -8.0), (3, -8.5))]
    facts, note, table = markup.training_log(epochs, "<code>history_</code>", rows=2)
    assert facts == ("<p>3 epochs logged; best validation ELBO -8.000 nats at epoch 2; 0.8 s of "
                     "training in all.</p>")
    assert "The last 2 lines of <code>history_</code>" in note
    assert re.findall(r"<th scope=\"col\">([^<]+)</th>", table) == [
        "epoch", "train ELBO", "train KL", "validation ELBO", "validation KL"]
    assert re.findall(r"<td class=\"num\">([^<]+)</td>", table) == [
        "2", "-8.000", "1.000", "-8.000", "1.500", "3", "-7.000", "1.000", "-8.500", "1.500"]
    em = [{"iteration": i, "train": {"log_likelihood": -5.0 + i}} for i in range(4)]
    facts = markup.training_log(em)[0]
    assert facts == "<p>3 EM iterations logged; best training log-likelihood -2.000 nats at iteration 3.</p>"
