"""A campaign's page shows the three embed snippets, copyable, with absolute URLs of the host it is reached at."""

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

from test_admin import admin, html, loaded, settings_overrides  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)


def page_at(client, path, host, scheme):
    """The page as asked for at `host`, signed in there with the session the client got on localhost."""
    client.set_cookie("bs_session", client.get_cookie("bs_session").value, domain=host.split(":")[0])
    return html(client.get(path, base_url=f"{scheme}://{host}"))


def snippets(text) -> dict:
    """{textarea id: its text as the browser shows it} of the embed codes section."""
    section = text[text.index('id="embed-codes"'):]
    section = section[:section.index("</section>")]
    return {name: unescape(body).strip() for name, body in
            re.findall(r'<textarea id="embed-code-(\w+)"[^>]*\breadonly\b[^>]*>(.*?)</textarea>', section, re.S)}


def test_embed_codes_are_absolute_urls_of_the_request_host(admin, loaded):  # noqa: F811
    text = page_at(admin, "/admin/campaigns/4", "dash.example:8443", "https")
    codes = snippets(text)
    assert set(codes) == {"iframe", "tag", "json"}
    assert codes["iframe"] == ('<iframe src="https://dash.example:8443/embed/4?target=top" width="300" height="250" '
                               'style="border:0" title="Advertisement" loading="lazy"></iframe>')
    assert codes["tag"] == ('<ins class="bannerservice" data-campaign="4" data-target="top"></ins>\n'
                            '<script async src="https://dash.example:8443/static/tag.js"></script>')
    method, url = codes["json"].split(" ")
    parts = urlsplit(url)
    assert method == "GET" and (parts.scheme, parts.netloc, parts.path) == ("https", "dash.example:8443", "/api/decision")
    assert parse_qs(parts.query) == {"c": ["4"], "vid": ["VISITOR_ID"]}


def test_embed_codes_follow_the_host_and_campaign(admin, loaded):  # noqa: F811
    codes = snippets(page_at(admin, "/admin/campaigns/7", "127.0.0.1:8200", "http"))
    assert 'src="http://127.0.0.1:8200/embed/7?target=top"' in codes["iframe"]
    assert 'data-campaign="7"' in codes["tag"] and "http://127.0.0.1:8200/static/tag.js" in codes["tag"]
