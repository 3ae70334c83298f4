"""``GET /``: the status page, one server-rendered HTML page for a person (tfgate.status_view
gathers what it shows).

Everything shown goes through ``html.escape``: model names, signature keys and TF Serving's
messages come from outside. The only script is the Predict form's, inline, allowed by a fresh
nonce in the Content-Security-Policy of each answer, which allows nothing else: no other
script, no external anything, fetch() only to this origin. The answer is shown with
``textContent``, never as HTML.

On ``http_listen`` the page is refused while [auth] is on (403): it lists the models and
settings, and a browser cannot present an API key. On ``admin_listen``, the operators' own
listener, it is shown with [auth] on too, without the Predict form: that listener serves no API.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from html import escape
from typing import Final

from aiohttp import web

from tfgate.errors import PermissionDenied
from tfgate.status import ModelStats
from tfgate.status_view import ModelView, Overview, example
from tfgate.v1 import inference_pb2

PATH: Final = "/"


class StatusPage:
    def __init__(
        self,
        gather: Callable[[], Awaitable[Overview]],
        open: Callable[[], bool],
        form: bool = True,
    ) -> None:
        """``gather``: what to show, read anew for each view; ``open``: whether to show it now;
        ``form``: whether the page has the Predict form (its listener serves tfgate.v1)."""
        self._gather = gather
        self._open = open
        self._form = form

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        if not self._open():
            raise PermissionDenied(
                "the status page is off while [auth] is on: it lists the models and settings"
            )
        nonce = secrets.token_urlsafe(16)
        text = render(await self._gather(), nonce, self._form)
        answer = web.Response(text=text, content_type="text/html", charset="utf-8")
        answer.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        answer.headers["Cache-Control"] = "no-store"
        answer.headers["X-Content-Type-Options"] = "nosniff"
        return answer


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"\u2264 {value:.3g} ms"


def _stats_cells(stats: ModelStats | None) -> str:
    if stats is None or not stats.calls:
        return '<td class="num">0</td><td class="num">-</td><td class="num">-</td><td>-</td>'
    return (
        f'<td class="num">{stats.per_second:.2f}/s</td>'
        f'<td class="num">{stats.error_ratio:.1%}</td>'
        f'<td class="num">{_e(_ms(stats.p50_ms))}</td><td>{_e(_ms(stats.p99_ms))}</td>'
    )


def _tensors(specs: Mapping[str, inference_pb2.TensorSpec]) -> str:
    out = []
    for key, spec in sorted(specs.items()):
        shape = "unknown rank" if spec.unknown_rank else "[" + ", ".join(map(str, spec.shape)) + "]"
        alias = f" \u2192 {_e(spec.alias)}" if spec.alias else ""
        out.append(f"<li><code>{_e(key)}</code> {_e(spec.dtype)} {_e(shape)}{alias}</li>")
    return "<ul>" + "".join(out) + "</ul>"


def _signatures(model: inference_pb2.Model) -> str:
    parts = []
    for title, table in (("what to send", model.domain_signatures), ("", model.signatures)):
        for name, sig in sorted(table.items()):
            what = f" ({title})" if title else ""
            parts.append(
                f'<div class="sig"><b>{_e(name)}</b>{_e(what)} <small>{_e(sig.method)}</small>'
                f"<div>inputs {_tensors(sig.inputs)}</div>"
                f"<div>outputs {_tensors(sig.outputs)}</div></div>"
            )
    return "".join(parts)


def _model_row(view: ModelView) -> str:
    model = view.model
    if model is None:
        versions = f'<span class="bad">{_e(view.error or "not described")}</span>'
        sigs = ""
    else:
        versions = "<br>".join(
            f"{v.version}: {_e(v.state)}"
            + (f' <span class="bad">{_e(v.error)}</span>' if v.error else "")
            for v in model.versions
        )
        sigs = _signatures(model)
    labels = "<br>".join(f"{_e(k)} \u2192 {v}" for k, v in sorted(view.labels.items())) or "-"
    return (
        f'<tr class="model" data-model="{_e(view.name)}"><td class="name">{_e(view.name)}</td>'
        f"<td>{_e(', '.join(view.sources))}</td><td>{versions}</td><td>{labels}</td>"
        f"{_stats_cells(view.stats)}<td>{sigs}</td></tr>"
    )


def _options(models: list[ModelView]) -> str:
    return "".join(
        f'<option value="{_e(v.name)}" data-example="{_e(example(v.model))}">{_e(v.name)}</option>'
        for v in models
        if v.model is not None
    )


_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.num{text-align:right}.bad{color:#b00}.good{color:#070}
ul{margin:0;padding-left:1.2em}.sig{margin-bottom:.4em}
textarea{width:100%;max-width:60em;height:6em;font-family:monospace}
pre{background:#f6f6f6;padding:.6em;max-width:60em;white-space:pre-wrap}
"""

# The Predict form: the body as typed, to tfgate.v1's JSON route; the answer as text.
_SCRIPT: Final = """
const form = document.getElementById("predict");
const pick = document.getElementById("model");
const body = document.getElementById("body");
const answer = document.getElementById("answer");
function fill() {
  const option = pick.options[pick.selectedIndex];
  if (option) body.value = option.dataset.example;
}
pick.addEventListener("change", fill);
fill();
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  answer.textContent = "...";
  const url = "/tfgate/v1/models/" + encodeURIComponent(pick.value) + ":predict";
  try {
    const response = await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: body.value});
    answer.textContent = response.status + " " + await response.text();
    answer.dataset.status = String(response.status);
  } catch (err) {
    answer.textContent = "request failed: " + err;
  }
});
"""


def render(view: Overview, nonce: str, form: bool = True) -> str:
    """The page for ``view``; ``nonce`` lets its one inline script and style run. Without
    ``form``, an example body per model to send to the HTTP listener instead."""
    backend = '<span class="good">up</span>' if view.backend_up else '<span class="bad">DOWN</span>'
    replicas = "".join(
        f"<tr><td>{_e(r.target)}</td><td>{_e(r.state)}</td></tr>" for r in view.replicas
    )
    models = "".join(_model_row(m) for m in view.models)
    other = ""
    if view.other is not None:
        other = (
            '<tr><td class="name">(other)</td><td>calls to models without a row</td>'
            f"<td></td><td></td>{_stats_cells(view.other)}<td></td></tr>"
        )
    n = _e(nonce)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tfgate status</title>
<style nonce="{n}">{_STYLE}</style></head><body>
<h1>tfgate {_e(view.version)}</h1>
<h2>Backend: {backend}</h2>
<table id="replicas"><tr><th>replica</th><th>connection</th></tr>{replicas}</table>
<table id="load">{_rows(view.load)}</table>
<h2>Settings</h2><table id="settings">{_rows(view.settings)}</table>
<h2>Models</h2>
<p>TF Serving cannot list its models: these are the ones named in the config file
([models.NAME], health_models) and those TF Serving has answered calls for. Labels are those
callers named, with the version each last resolved to. Calls: the last minute, every method and
front; errors are calls answered with any code but OK; p50/p99 within 25%.</p>
<table id="models"><tr><th>model</th><th>listed from</th><th>versions</th><th>labels</th>
<th>calls</th><th>errors</th><th>p50</th><th>p99</th><th>signatures</th></tr>
{models}{other}</table>
<h2>Predict</h2>
{_form(view.models, n) if form else _examples(view.models)}
</body></html>
"""


def _form(models: list[ModelView], nonce: str) -> str:
    pick = f'<label>model <select id="model">{_options(models)}</select></label>'
    return f"""<form id="predict">{pick}
<p><textarea id="body" spellcheck="false"></textarea></p>
<button type="submit" id="send">Send</button></form>
<pre id="answer"></pre>
<script nonce="{nonce}">{_SCRIPT}</script>"""


def _examples(models: list[ModelView]) -> str:
    """The admin listener's page: what to POST, and where, since it serves no API itself."""
    items = "".join(
        f"<dt><code>POST /tfgate/v1/models/{_e(v.name)}:predict</code></dt>"
        f"<dd><pre>{_e(example(v.model))}</pre></dd>"
        for v in models
        if v.model is not None
    )
    return (
        '<p id="examples">Send these bodies to the HTTP listener (this listener serves no API), '
        f"e.g. with <code>curl -d @body.json</code>:</p><dl>{items}</dl>"
    )
