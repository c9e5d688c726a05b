"""The checks of the built HTML book on small hand-written pages (the built book: test_book_build.py)."""
from mlbook.html_check import paragraph_texts, raw_math_problems, run_log_lines

GOOD = """<html><body><section>
<p>The loss <span class="math notranslate nohighlight">\\(L = -\\sum_c y_c \\log p_c\\)</span> is summed.</p>
<div class="math notranslate nohighlight">\\[\\hat y = \\sigma(Wx + b)\\]</div>
<p>Run it with <code class="docutils literal"><span class="pre">echo $HOME</span></code>.<br/>Done.</p>
<div class="highlight"><pre><span></span>price = "$5"</pre></div>
<p>A <mjx-container class="MathJax">$x$</mjx-container> typeset by MathJax.</p>
</section></body></html>"""

BROKEN = """<html><body>
<p>The model scores every label:
$$s = W h + b$$
where <span class="math notranslate nohighlight">\\(W\\)</span> is learnt.</p>
<p>Nothing wrong here.</p>
</body></html>"""

# what MyST makes of a $$ equation written inside a paragraph (no blank line around it)
MYST_BROKEN = """<p>The ranking loss:
$<span class="math notranslate nohighlight">\\(L = \\sum_j \\max(0, 1 - s_i + s_j)\\)</span>$
over the negative labels.</p>"""


def test_equations_parsed_as_math_leave_no_raw_dollar():
    assert raw_math_problems(GOOD) == []
    texts = paragraph_texts(GOOD)
    assert texts[0] == "The loss is summed." and texts[1] == "Run it with .Done."


def test_an_equation_left_in_a_paragraph_is_found():
    problems = raw_math_problems(BROKEN)
    assert len(problems) == 1 and "$$s = W h + b$$" in problems[0]
    problems = raw_math_problems(MYST_BROKEN)
    assert len(problems) == 1 and "The ranking loss: $$ over" in problems[0], problems


def test_page_file_and_run_log_lines(tmp_path):
    page = tmp_path / "06_rlsd.html"
    page.write_text(BROKEN.replace("<p>Nothing", '<div class="output stream highlight-myst-ansi"><pre>'
                                   "<span></span>[cache] backbone_features/4f701179ae59348c: code changed "
                                   "(mlbook.cache._PROBING); recomputing\n[run] rlsd/0a97419bb6c6d3f2: computed "
                                   "in 1.4 s\n</pre></div><p>Nothing"))
    assert raw_math_problems(page)[0].startswith("06_rlsd.html: raw $ in a paragraph")
    assert run_log_lines(page) == [
        "06_rlsd.html: [cache] backbone_features/4f701179ae59348c: code changed (mlbook.cache._PROBING); recomputing",
        "06_rlsd.html: [run] rlsd/0a97419bb6c6d3f2: computed in 1.4 s"]
    assert run_log_lines(GOOD) == [] and run_log_lines(str(page)) == run_log_lines(page)
