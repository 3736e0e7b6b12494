"""Build the book and check every page of the static site in a real browser (Chromium).

The build runs `jupyter-book build <repo> -W --keep-going` into a fresh temporary folder, so every Sphinx warning
is a failure. Each chapter runs once per test session: when nbval has executed the chapters in the same session
(the README's test command), the build takes their outputs from myst-nb's cache (`execute_notebooks: cache`,
filled from the notebooks the root conftest.py writes) instead of executing them again; a chapter nbval did not run,
or that failed, is executed by the build. Run alone (`pytest tests/test_site.py`), the build executes everything.
The built site is then served on 127.0.0.1 and each page listed in _toc.yml is opened in headless Chromium.
A page passes when:
  - no request to the local server fails (no 404, no aborted request);
  - the page asks for no script from another host (the site must work offline);
  - the console shows no error and no script throws;
  - every <img> has loaded (naturalWidth > 0);
  - every formula was typeset by the vendored MathJax, without a TeX error;
  - every matplotlib `to_jshtml` animation steps to the next frame when "Next frame" is clicked;
  - every saved ipywidgets view has rendered, and every slider among them moves when dragged;
  - every control of every explorer (diffbook.show.explorer) changes the picture when moved;
  - on a chapter page: no paragraph is a raw markdown table ("| a | b |"), every table has a caption, every image
    sits in a numbered figure with a caption and has alt text, and no shown code cell, output or displayed
    equation is wider than the text column at 1280 px.
A full-page screenshot of each page is saved in _build/screens/ for a person to look at.

The build is slow: it runs once per session (module fixture), marked `site` (deselect with `-m "not site"`).
To check an already built site while working on this file, set DIFFBOOK_SITE_HTML=_build/html (skips the build;
never set in CI).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import ROOT, toc_docnames

pytestmark = pytest.mark.site

CHROMIUM = os.environ.get("DIFFBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
SCREENS = ROOT / "_build" / "screens"
BUILD_TIMEOUT_S = 3600
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# ----------------------------------------------------------------------------------------- build
def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book is not installed in this environment; run `bash scripts/setup.sh`")
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _executed_chapters(request, timeout_s: float = 2400) -> Path | None:
    """The folder of the chapters nbval executed in this session (after waiting for those still running), or None
    when this session runs no chapter under nbval."""
    root_conftest = sys.modules.get("diffbook_root_conftest") or _root_conftest()
    chapters = sorted({Path(str(i.parent.path)).stem for i in request.session.items if root_conftest.is_nbval_cell(i)})
    if not chapters:
        return None
    folder = root_conftest.executed_dir(request.config)
    deadline, start = time.monotonic() + timeout_s, time.monotonic()
    while True:
        pending = [c for c in chapters if not any((folder / f"{c}{ext}").exists() for ext in (".ipynb", ".failed"))]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2)
    print(f"waited {time.monotonic() - start:.0f} s for nbval's chapters; not executed by nbval: {pending}",
          file=sys.stderr)
    return folder


def _root_conftest():
    import importlib.util

    spec = importlib.util.spec_from_file_location("diffbook_root_conftest", ROOT / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["diffbook_root_conftest"] = mod
    return mod


def _cached_config(out: Path, executed: Path) -> Path:
    """A copy of _config.yml that takes outputs from a jupyter-cache filled with the executed chapters."""
    from jupyter_cache import get_cache

    sys.path.insert(0, str(ROOT / "scripts"))
    from build_cached import cached_config

    cache_dir = out / "jupyter_cache"
    cache = get_cache(cache_dir)
    for nb in sorted(executed.glob("*.ipynb")):
        cache.cache_notebook_file(str(nb), uri=str(ROOT / "book" / nb.name), check_validity=False, overwrite=True)
    return cached_config(out, cache_dir)


def _build_site(out: Path, executed: Path | None = None) -> tuple[Path, str]:
    """Build the book into `out` with -W (from the executed chapters in `executed`, if given).
    Return (html folder, "" or a report of what went wrong)."""
    log_path = out / "build.log"
    cmd = [_jupyter_book(), "build", str(ROOT), "--path-output", str(out), "-W", "--keep-going"]
    if executed is not None:
        cmd += ["--config", str(_cached_config(out, executed))]
    env = dict(os.environ, NO_COLOR="1")
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            timeout=BUILD_TIMEOUT_S, check=False, env=env,
        )
    elapsed = time.monotonic() - start
    html = out / "_build" / "html"
    print(f"site built in {elapsed:.0f} s (exit {proc.returncode}); log: {log_path}", file=sys.stderr)
    if proc.returncode == 0 and (html / "index.html").exists():
        return html, ""
    lines = _ANSI.sub("", log_path.read_text(encoding="utf-8", errors="replace")).splitlines()
    problems = [ln for ln in lines if re.search(r"WARNING|ERROR|Error|Traceback", ln)]
    return html, (
        f"`{' '.join(cmd)}` failed (exit {proc.returncode}, {elapsed:.0f} s).\n"
        f"Warnings and errors ({len(problems)}):\n" + "\n".join(problems[:80]) +
        f"\n\nLast lines of {log_path}:\n" + "\n".join(lines[-120:]) +
        f"\n\nExecution reports, if any: {html / 'reports'}"
    )


@pytest.fixture(scope="module")
def site_build(tmp_path_factory, request) -> tuple[Path, str]:
    existing = os.environ.get("DIFFBOOK_SITE_HTML")
    if existing:
        html = (ROOT / existing).resolve()
        return html, "" if (html / "index.html").exists() else f"DIFFBOOK_SITE_HTML={existing}: no index.html"
    return _build_site(tmp_path_factory.mktemp("site"), _executed_chapters(request))


@pytest.fixture(scope="module")
def site_html(site_build) -> Path:
    html, failure = site_build
    if failure:
        pytest.skip("the site did not build: see test_site_builds_without_warnings")
    return html


def test_site_builds_without_warnings(site_build):
    """`jupyter-book build . -W --keep-going` executes every chapter and succeeds without a warning."""
    _, failure = site_build
    if failure:
        pytest.fail(failure, pytrace=False)


# ---------------------------------------------------------------------------------------- server
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass


@pytest.fixture(scope="module")
def base_url(site_html):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site_html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; run `bash scripts/setup.sh` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


# ------------------------------------------------------------------------------- static checks
class _AssetParser(HTMLParser):
    """Collect the <script> tags (their src and type) of one HTML page."""

    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []
        self.script_types: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.script_types.append(a.get("type") or "")
            if a.get("src"):
                self.scripts.append(a["src"])


def _is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def test_built_pages_load_no_remote_script(site_html):
    """No built page (chapters, index, search, genindex...) has a <script src> on another host, and every
    page that carries saved widget state loads the vendored RequireJS and widget manager."""
    pages = sorted(site_html.rglob("*.html"))
    assert pages, f"no HTML pages in {site_html}"
    remote, missing_manager = [], []
    for page in pages:
        parser = _AssetParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        remote += [f"{page.relative_to(site_html)}: {src}" for src in parser.scripts if _is_remote(src)]
        if "application/vnd.jupyter.widget-state+json" in parser.script_types:
            names = [urlsplit(src).path.rsplit("/", 1)[-1] for src in parser.scripts]
            if "require.js" not in names or "embed-amd.js" not in names:
                missing_manager.append(str(page.relative_to(site_html)))
    assert not remote, "pages load scripts from other hosts (the site must work offline):\n" + "\n".join(remote)
    assert not missing_manager, f"pages with widget state but no vendored widget manager: {missing_manager}"


def test_every_toc_page_was_built(site_html):
    missing = [d for d in toc_docnames() if not (site_html / f"{d}.html").exists()]
    assert not missing, f"pages listed in _toc.yml but not built: {missing}"


# ------------------------------------------------------------------------------- browser checks
_BROKEN_IMAGES_JS = """() => Array.from(document.images)
    .filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => (img.getAttribute('src') || img.src || '(no src) #' + img.id).slice(0, 120))"""

_MATH_JS = """async () => {
    const maths = Array.from(document.querySelectorAll('.math'));
    if (maths.length === 0) return {count: 0, untypeset: [], errors: []};
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
        return {count: maths.length, untypeset: ['MathJax did not load'], errors: []};
    }
    await MathJax.startup.promise;
    const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                           .map(m => m.textContent.slice(0, 80));
    const errors = Array.from(document.querySelectorAll('mjx-merror'))
                        .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120));
    return {count: maths.length, untypeset, errors};
}"""


def _check_animations(page) -> list[str]:
    """Click "Next frame" on each to_jshtml animation; the frame index and the shown image must change."""
    problems = []
    anims = page.locator("div.animation")
    for i in range(anims.count()):
        anim = anims.nth(i)
        anim.scroll_into_view_if_needed()
        img = anim.locator("img").first
        slider = anim.locator("input.anim-slider").first
        try:
            page.wait_for_function("el => !!el.getAttribute('src')", arg=img.element_handle(), timeout=10_000)
        except Exception:
            problems.append(f"animation {i}: its image never got a frame (the animation script did not run)")
            continue
        n_frames = int(slider.get_attribute("max") or 0) + 1
        if n_frames < 2:
            problems.append(f"animation {i}: has {n_frames} frame(s); an animation needs at least 2")
            continue
        anim.locator('button[title="First frame"]').click()
        before = (slider.input_value(), img.get_attribute("src"))
        anim.locator('button[title="Next frame"]').click()
        after = (slider.input_value(), img.get_attribute("src"))
        if after[0] != str(int(before[0]) + 1):
            problems.append(f"animation {i}: 'Next frame' moved the slider from {before[0]} to {after[0]}")
        if after[1] == before[1]:
            problems.append(f"animation {i}: 'Next frame' did not change the shown image (frames 0 and 1 "
                            "are identical, or the button does nothing)")
    return problems


_EXPLORERS_JS = """() => Array.from(document.querySelectorAll('div.diffbook-explorer')).map(ex => ({
    id: ex.id, controls: Array.from(ex.querySelectorAll('[data-control]')).map(el => el.getAttribute('data-control'))
}))"""


def _check_explorers(page) -> list[str]:
    """Move every control of every static explorer to another value: the picture must change each time."""
    problems = []
    for ex in page.evaluate(_EXPLORERS_JS):
        root = page.locator(f"#{ex['id']}")
        root.scroll_into_view_if_needed()
        img = root.locator("img.explorer-frame")
        if not ex["controls"]:
            problems.append(f"explorer {ex['id']}: no controls")
        for name in ex["controls"]:
            before = img.get_attribute("src") or ""
            control = root.locator(f'[data-control="{name}"]')
            if control.evaluate("el => el.tagName") == "SELECT":
                n = control.locator("option").count()
                control.select_option(str(n - 1))
            else:
                control.fill(control.get_attribute("max"))
            after = img.get_attribute("src") or ""
            if not after.startswith("data:image/png") or after == before:
                problems.append(f"explorer {ex['id']}: moving control {name!r} did not change the picture")
    return problems


_READER_JS = """() => {
    const main = document.querySelector('main') || document.body;
    const out = {rawTables: [], uncaptionedTables: [], images: [], wide: [], tableNumbers: [], title: ''};
    // the page's heading (the one with a permalink; the theme repeats the title without one in its header)
    const h1 = [...main.querySelectorAll('h1')].find(h => h.querySelector('a.headerlink')) || main.querySelector('h1');
    out.title = h1 ? h1.textContent.replace('#', '').trim() : '';
    main.querySelectorAll('table caption .caption-number').forEach(n => out.tableNumbers.push(n.textContent.trim()));
    main.querySelectorAll('p').forEach(p => {
        const t = p.textContent.trim();
        if (t.startsWith('| ') || t.includes('|---|') || t.includes('| --- |')) out.rawTables.push(t.slice(0, 80));
    });
    // results tables (a code cell's output) need a numbered caption; a small table in the prose may go without
    main.querySelectorAll('div.cell table').forEach(t => {
        const cap = t.querySelector('caption');
        if (!cap || !cap.textContent.trim()) out.uncaptionedTables.push(t.textContent.trim().slice(0, 60));
    });
    main.querySelectorAll('img').forEach(img => {
        if (img.closest('.header-article, .bd-header-article, .dropdown-menu')) return;   // the theme's buttons
        const fig = img.closest('figure');
        const cap = fig && fig.querySelector('figcaption');
        const numbered = cap && cap.querySelector('.caption-number');
        const alt = (img.getAttribute('alt') || '').trim();
        const src = img.getAttribute('src') || '';
        if (!fig || !cap || !numbered || !alt || alt === src || alt.endsWith('.png') || alt.startsWith('<Figure size'))
            out.images.push({src: (img.getAttribute('src') || '').slice(0, 60), figure: !!fig, caption: !!cap,
                             numbered: !!numbered, alt: alt.slice(0, 40)});
    });
    const column = main.querySelector('article') || main;
    const limit = column.getBoundingClientRect().width + 2;
    const wide = el => el.scrollWidth > el.clientWidth + 2 || el.getBoundingClientRect().width > limit;
    main.querySelectorAll('div.cell:not(.tag_remove-input) div.cell_input pre, div.cell_output pre, ' +
                          'div.math-wrapper, div.cell_output > div.output').forEach(el => {
        if (wide(el)) out.wide.push(el.textContent.trim().split('\\n')[0].slice(0, 70));
    });
    return out;
}"""


def _check_reader(page) -> list[str]:
    """What a student sees on a chapter page: real tables, captioned figures with alt text, nothing too wide."""
    found = page.evaluate(_READER_JS)
    problems = []
    if found["rawTables"]:
        problems.append(f"raw markdown tables rendered as text: {found['rawTables'][:3]}")
    if found["uncaptionedTables"]:
        problems.append(f"tables without a caption: {found['uncaptionedTables'][:3]}")
    if found["images"]:
        problems.append(f"images outside a numbered, captioned figure or without alt text: {found['images'][:4]}")
    if found["wide"]:
        problems.append(f"{len(found['wide'])} code cells, outputs or equations wider than the column: "
                        f"{found['wide'][:4]}")
    # "Table 8.3" must be on chapter 8's page, "Table C.1" on appendix C's: the prose cites tables by number
    chapter = re.match(r"^(?:(\d+)\.\s|Appendix ([A-Z]):)", found["title"])
    own = (chapter.group(1) or chapter.group(2)) if chapter else None
    wrong = [n for n in found["tableNumbers"] if own is None or not n.startswith(f"Table {own}.")]
    if wrong:
        problems.append(f"table numbers that are not this page's ({found['title'][:40]!r}): {wrong[:4]}")
    return problems


def _is_chapter(docname: str) -> bool:
    return (ROOT / f"{docname}.ipynb").exists()


def _check_widgets(page) -> list[str]:
    """Every saved widget view must render; every slider must move when its handle is dragged."""
    problems = []
    n_views = page.locator(f'script[type="{WIDGET_VIEW}"]').count()
    if n_views == 0:
        return problems
    try:
        page.wait_for_function(
            "n => document.querySelectorAll('.widget-subarea').length >= n", arg=n_views, timeout=20_000)
    except Exception:
        found = page.locator(".widget-subarea").count()
        return [f"{n_views} saved widget view(s), but the widget manager rendered {found}"]
    subareas = page.locator(".widget-subarea")
    for i in range(subareas.count()):
        box = subareas.nth(i).bounding_box()
        if not box or box["height"] < 5 or box["width"] < 5:
            problems.append(f"widget view {i} rendered empty ({box})")
    sliders = page.locator(".widget-subarea .widget-slider:not(.widget-vslider)")
    for i in range(sliders.count()):
        s = sliders.nth(i)
        s.scroll_into_view_if_needed()
        handle, track = s.locator(".noUi-handle").first, s.locator(".noUi-target").first
        readout = s.locator(".widget-readout").first
        values = []
        for frac in (0.0, 1.0, 0.0):
            hb, tb = handle.bounding_box(), track.bounding_box()
            if not hb or not tb:
                problems.append(f"slider {i}: not visible")
                break
            page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
            page.mouse.down()
            page.mouse.move(tb["x"] + frac * tb["width"], tb["y"] + tb["height"] / 2, steps=8)
            page.mouse.up()
            values.append(readout.inner_text() if readout.count() else "")
        if len(values) == 3 and not (values[0] != values[1] and values[1] != values[2]):
            problems.append(f"slider {i}: dragging the handle did not change its value (readouts {values})")
    return problems


@pytest.mark.parametrize("docname", toc_docnames())
def test_page_in_browser(docname, base_url, browser):
    url = f"{base_url}/{docname}.html"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    page = context.new_page()
    remote_scripts, remote_other, local_failures, console_errors = [], {}, [], []

    def route(r):
        req = r.request
        host = urlsplit(req.url).hostname
        if host in LOCAL_HOSTS:
            r.continue_()
            return
        if req.resource_type == "script":
            remote_scripts.append(req.url)
        else:
            remote_other[req.url] = req.resource_type
        r.abort()

    def on_failed(req):
        if urlsplit(req.url).hostname in LOCAL_HOSTS:
            local_failures.append(f"{req.url}: {req.failure}")

    def on_response(resp):
        if urlsplit(resp.url).hostname in LOCAL_HOSTS and resp.status >= 400:
            local_failures.append(f"{resp.url}: HTTP {resp.status}")

    def on_console(msg):
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        if where in remote_other and msg.text.startswith("Failed to load resource"):
            return  # an aborted request to another host for a non-script resource, reported below
        console_errors.append(f"{msg.text} (at {where})")

    context.route("**/*", route)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))

    problems: list[str] = []
    try:
        resp = page.goto(url, wait_until="load")
        assert resp is not None and resp.ok, f"{url}: HTTP {resp.status if resp else 'no response'}"
        page.evaluate("() => document.querySelectorAll('img').forEach(img => { img.loading = 'eager'; })")
        page.wait_for_load_state("networkidle")

        math = page.evaluate(_MATH_JS)
        if math["untypeset"]:
            problems.append(f"formulas not typeset by MathJax: {math['untypeset'][:5]}")
        if math["errors"]:
            problems.append(f"TeX errors in formulas: {math['errors'][:5]}")

        problems += _check_animations(page)
        problems += _check_widgets(page)
        problems += _check_explorers(page)
        if _is_chapter(docname):
            problems += _check_reader(page)

        try:
            page.wait_for_function(f"() => ({_BROKEN_IMAGES_JS})().length === 0", timeout=15_000)
        except Exception:
            problems.append(f"images that did not load: {page.evaluate(_BROKEN_IMAGES_JS)}")

        page.wait_for_load_state("networkidle")
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENS / (docname.replace("/", "__") + ".png")), full_page=True)
    finally:
        context.close()

    if remote_other:
        # Not failures (the page still works), but everything should be served by the site itself.
        print(f"{docname}: requests to other hosts were blocked: {remote_other}", file=sys.stderr)
    if remote_scripts:
        problems.insert(0, f"loads scripts from other hosts (the site must work offline): {remote_scripts}")
    if local_failures:
        problems.append(f"failed requests to the local site: {local_failures}")
    if console_errors:
        problems.append(f"console errors: {console_errors}")
    assert not problems, f"{docname}:\n  " + "\n  ".join(problems)
