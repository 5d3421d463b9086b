"""Redirect targets: what may follow a login or a click."""

import pytest

from webapp.urls import is_local_path, is_safe_landing_url


@pytest.mark.parametrize("url", ["/", "/admin/campaigns?quarter=2", "/campaigns/1#x"])
def test_is_local_path_accepts_paths_on_this_site(url):
    assert is_local_path(url)


@pytest.mark.parametrize(
    "url",
    ["//evil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n/x", "/\\evil.example", "https://evil.example/",
     "evil.example", "", None, "javascript:alert(1)", "/ /evil", "/\x7f/x"],
)
def test_is_local_path_refuses_anything_a_browser_could_read_as_another_host(url):
    assert not is_local_path(url)


@pytest.mark.parametrize("url", ["https://shop.example/offer?x=1", "http://a.example", "/", "/promo"])
def test_is_safe_landing_url_accepts_http_urls_and_local_paths(url):
    assert is_safe_landing_url(url)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https:///nohost", "//evil.example", "ftp://x.example/", "https://a.example\\@b", "https://a.example/\tx"])
def test_is_safe_landing_url_refuses_other_schemes_and_tricks(url):
    assert not is_safe_landing_url(url)
