"""The browser files' route (`/wt-static/…`, ui/__init__.py) and the page head's module loader
(ui/widgets.py): ES modules with a JavaScript type, from ui/static and its folders and livekit-client's
module build only, revalidated by ETag (no-cache), and nothing outside them."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import ui
from ui.widgets import LIVEKIT_CLIENT, STATIC_DIR, head_html

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    ui._static_routes(app)
    return TestClient(app)


@pytest.mark.parametrize("name", ["main.js", "desk/desk.js", "protocol.js", "boot.js"])
def test_modules_are_javascript_and_revalidated(client, name):
    answer = client.get(f"/wt-static/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.text == (STATIC_DIR / name).read_text()
    again = client.get(f"/wt-static/{name}", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.skipif(not LIVEKIT_CLIENT.exists(), reason="npm ci not run")
def test_livekit_client_is_its_module_build(client):
    answer = client.get("/wt-static/vendor/livekit-client.esm.mjs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "export{" in answer.text[-20_000:]


@pytest.mark.parametrize(
    "name",
    [
        "../widgets.py",
        "desk/../../widgets.py",
        "%2e%2e/widgets.py",
        "..%2fwidgets.py",
        "desk/..%2F..%2Fwidgets.py",
        ".hidden.js",
        "desk//desk.js",
        "package.json",
        "vendor/livekit-client.umd.js",
        "vendor/../../package.json",
        "nope.js",
    ],
)
def test_nothing_else_is_served(client, name):
    assert client.get(f"/wt-static/{name}").status_code == 404


def test_the_head_imports_the_entry_module_with_a_version():
    head = head_html()
    assert head.startswith('<script>import("./wt-static/main.js?v=') and head.endswith("</script>")
    assert "type=" not in head  # Gradio copies a head script's src and text only, never its type


@pytest.mark.skipif(not LIVEKIT_CLIENT.exists(), reason="npm ci not run")
def test_the_large_module_goes_gzipped_to_browsers_that_take_it(client):
    zipped = client.get("/wt-static/vendor/livekit-client.esm.mjs", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert int(zipped.headers["content-length"]) < LIVEKIT_CLIENT.stat().st_size / 3  # what goes over the wire
    assert zipped.content == LIVEKIT_CLIENT.read_bytes()  # what the browser runs, unzipped by the client
    plain = client.get("/wt-static/vendor/livekit-client.esm.mjs", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == LIVEKIT_CLIENT.read_bytes()
    small = client.get("/wt-static/boot.js", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers  # small files go as they are
