"""Explorers that work both live and on the static website, with the same controls in both.

An :class:`Explorer` holds one drawing function ``draw(axes, **values)`` and its named controls, each a list of
values. In Jupyter or Colab, :meth:`Explorer.live` gives ipywidgets controls (a slider for numbers, a menu for
text) that call ``draw`` in Python. The website cannot run Python, so :meth:`Explorer.static` draws every
combination of control values once, in advance, and returns a self-contained HTML figure: the same controls as
HTML ``<input type="range">`` and ``<select>`` elements and a few lines of plain JavaScript that show the frame of
the chosen combination (and a play button that steps through the first control). No kernel, no widget manager,
no network: the frames are PNG images inside the page.

Keep the product of the control sizes modest (a few dozen to ~150 frames) and the figure small: every frame is an
image in the page.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from typing import Callable, Sequence

__all__ = ["Explorer", "StaticExplorer", "MAX_FRAMES"]

MAX_FRAMES = 240  # frames of one static explorer: more makes the page heavy


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_SCRIPT = """
(function () {
  const root = document.getElementById(%(id)s);
  const frames = JSON.parse(root.querySelector("script.frames").textContent);
  const strides = %(strides)s, names = %(names)s, labels = %(labels)s;
  const img = root.querySelector("img.explorer-frame");
  const inputs = names.map(n => root.querySelector('[data-control="' + n + '"]'));
  function show() {
    let k = 0;
    inputs.forEach((el, i) => {
      const v = parseInt(el.value, 10);
      k += v * strides[i];
      const out = root.querySelector('[data-value="' + names[i] + '"]');
      if (out) out.textContent = labels[i][v];
    });
    img.src = "data:image/png;base64," + frames[k];
  }
  inputs.forEach(el => el.addEventListener("input", show));
  const play = root.querySelector("button.explorer-play");
  let timer = null;
  if (play) play.addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; play.textContent = "\\u25B6 play"; return; }
    play.textContent = "\\u23F8 pause";
    timer = setInterval(() => {
      const el = inputs[0];
      el.value = (parseInt(el.value, 10) + 1) %% (parseInt(el.max, 10) + 1);
      show();
    }, %(interval)d);
  });
  show();
})();
"""


class StaticExplorer:
    """What :meth:`Explorer.static` returns: displayed, it is the HTML explorer (websites, Jupyter, Colab) and,
    where HTML cannot show (the PDF), the first frame as a PNG."""

    def __init__(self, html_text: str, first_png_b64: str):
        self.html, self.png = html_text, first_png_b64

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html, "image/png": self.png}


class Explorer:
    """``draw(axes, **values)`` over named controls ``{name: [values]}``; see the module docstring.

    ``labels`` maps a control to the text shown for each of its values (default: the values themselves);
    ``figsize``, ``ncols`` and ``dpi`` size the figure (``draw`` gets a list of ``ncols`` axes, cleared for each
    frame); ``alt`` describes the picture for readers who cannot see it; ``play`` adds a play button that steps
    through the first control every ``interval`` milliseconds.
    """

    def __init__(self, draw: Callable, controls: dict[str, Sequence], *, labels: dict[str, Sequence[str]] | None = None,
                 figsize=(6.0, 3.0), ncols: int = 1, dpi: int = 80, alt: str, play: bool = False,
                 interval: int = 400):
        if not callable(draw):
            raise TypeError(f"draw must be callable as draw(axes, **values), got {type(draw).__name__}.")
        if not isinstance(controls, dict) or not controls:
            raise ValueError("controls must be a non-empty dict {name: [values]}.")
        self.controls = {str(k): list(v) for k, v in controls.items()}
        for name, values in self.controls.items():
            if not name.isidentifier():
                raise ValueError(f"control name {name!r} must be a Python identifier (it is a keyword of draw).")
            if len(values) < 2:
                raise ValueError(f"control {name!r} needs at least 2 values, got {values}.")
        labels = dict(labels or {})
        unknown = sorted(set(labels) - set(self.controls))
        if unknown:
            raise ValueError(f"labels name controls {unknown} that do not exist ({list(self.controls)}).")
        self.labels = {}
        for name, values in self.controls.items():
            lab = [str(s) for s in labels.get(name, [_label(v) for v in values])]
            if len(lab) != len(values):
                raise ValueError(f"control {name!r} has {len(values)} values but {len(lab)} labels.")
            self.labels[name] = lab
        n = 1
        for values in self.controls.values():
            n *= len(values)
        if n > MAX_FRAMES:
            raise ValueError(f"{n} combinations of control values is more than {MAX_FRAMES} frames; use fewer values.")
        if not isinstance(alt, str) or not alt.strip():
            raise ValueError("alt must describe the picture in words (for readers who cannot see it).")
        self.draw, self.figsize, self.ncols, self.dpi, self.alt = draw, figsize, ncols, dpi, alt
        self.play, self.interval = bool(play), int(interval)
        self.n_frames = n

    # -------------------------------------------------------------------------------------------- drawing
    def _figure(self):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, self.ncols, figsize=self.figsize, squeeze=False)
        return fig, list(axes[0])

    def frames(self) -> list[str]:
        """Every combination of control values drawn once (the first control varies slowest), as base64 PNGs."""
        import matplotlib.pyplot as plt

        fig, axes = self._figure()
        out = []
        try:
            for combo in itertools.product(*self.controls.values()):
                for ax in axes:
                    ax.clear()
                if fig._suptitle is not None:
                    fig._suptitle.set_text("")
                self.draw(axes, **dict(zip(self.controls, combo)))
                fig.tight_layout()
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=self.dpi)
                out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
        finally:
            plt.close(fig)
        return out

    # -------------------------------------------------------------------------------------------- the two forms
    def static(self) -> "StaticExplorer":
        """The website's form: an HTML figure with the controls and every frame inside (and, for the PDF of the
        book, the first frame as a PNG)."""
        frames = self.frames()
        return StaticExplorer(self.html(frames), frames[0])

    def html(self, frames: list[str] | None = None) -> str:
        names = list(self.controls)
        sizes = [len(v) for v in self.controls.values()]
        strides = [1] * len(sizes)
        for i in range(len(sizes) - 2, -1, -1):
            strides[i] = strides[i + 1] * sizes[i + 1]
        uid = "explorer-" + uuid.uuid4().hex[:10]
        rows = []
        for i, name in enumerate(names):
            text_values = not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.controls[name])
            if text_values and sizes[i] <= 12:
                options = "".join(f'<option value="{k}">{html.escape(s)}</option>'
                                  for k, s in enumerate(self.labels[name]))
                control = f'<select data-control="{name}" aria-label="{html.escape(name)}">{options}</select>'
            else:
                control = (f'<input type="range" data-control="{name}" min="0" max="{sizes[i] - 1}" step="1" '
                           f'value="0" aria-label="{html.escape(name)}">'
                           f'<output data-value="{name}">{html.escape(self.labels[name][0])}</output>')
            button = ('<button type="button" class="explorer-play">\u25B6 play</button>'
                      if self.play and i == 0 else "")
            rows.append(f'<label class="explorer-control"><span class="explorer-name">{html.escape(name)}</span>'
                        f"{control}</label>{button}")
        frames = json.dumps(frames if frames is not None else self.frames())
        script = _SCRIPT % dict(id=json.dumps(uid), strides=json.dumps(strides), names=json.dumps(names),
                                labels=json.dumps([self.labels[n] for n in names]), interval=self.interval)
        return (f'<div class="diffbook-explorer" id="{uid}">\n<div class="explorer-controls">{"".join(rows)}</div>\n'
                f'<img class="explorer-frame" alt="{html.escape(self.alt)}">\n'
                f'<script type="application/json" class="frames">{frames}</script>\n'
                f"<script>{script}</script>\n</div>")

    def live(self):
        """Jupyter's and Colab's form: ipywidgets controls (sliders for numbers, menus for text) redrawing in Python."""
        import ipywidgets
        import matplotlib.pyplot as plt

        widgets = {}
        for name, values in self.controls.items():
            options = list(zip(self.labels[name], values))
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            cls = ipywidgets.SelectionSlider if numeric else ipywidgets.Dropdown
            widgets[name] = cls(options=options, value=values[0], description=name, continuous_update=False) \
                if numeric else cls(options=options, value=values[0], description=name)

        def show(**values):
            fig, axes = self._figure()
            self.draw(axes, **values)
            fig.tight_layout()
            plt.show()
            plt.close(fig)

        return ipywidgets.interactive(show, **widgets)
