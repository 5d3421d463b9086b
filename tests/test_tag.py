"""webapp/static/tag.js as the app serves it without nginx, and its size (nginx's side: tests/browser/test_embed_browser.py)."""

import gzip

from conftest import ROOT

TAG = ROOT / "webapp" / "static" / "tag.js"


def test_tag_is_small_gzipped():
    assert len(gzip.compress(TAG.read_bytes(), compresslevel=5)) < 4096  # nginx's gzip_comp_level


def test_tag_from_the_app_has_an_etag_and_revalidates(client):
    response = client.get("/static/tag.js")
    assert response.status_code == 200 and response.data == TAG.read_bytes()
    assert response.headers["Content-Type"].startswith(("application/javascript", "text/javascript"))
    assert response.headers["Cache-Control"] == "no-cache"  # nginx sends max-age=3600 in front of it
    again = client.get("/static/tag.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
