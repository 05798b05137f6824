"""``regionUrl``: only https, the API's host or an allowed region host, default port, no
userinfo, no IP literal (pure: no request is ever made here)."""

from __future__ import annotations

import pytest

from scopegate.core.region_url import RegionUrlRefused, check_region_url

API_HOST = "api.example.com"
ALLOWED = ("us.example.com",)


@pytest.mark.parametrize("url, expected", [
    ("https://api.example.com", "https://api.example.com"),
    ("https://us.example.com/", "https://us.example.com"),
    ("https://US.Example.com:443", "https://us.example.com"),
])
def test_the_api_host_and_allowed_region_hosts_pass(url: str, expected: str) -> None:
    assert check_region_url(url, api_host=API_HOST, allowed_hosts=ALLOWED) == expected


@pytest.mark.parametrize("url, rule", [
    ("http://us.example.com", "https"),
    ("https://evil.example", "allowed region host"),
    ("https://us.example.com.evil.example", "allowed region host"),
    ("https://us.example.com@evil.example", "user name"),
    ("https://evil.example@us.example.com", "user name"),
    ("https://user:pw@us.example.com", "user name"),
    ("https://127.0.0.1", "IP address"),
    ("https://[::1]", "IP address"),
    ("https://169.254.169.254", "IP address"),
    ("https://2130706433", "IP address"),
    ("https://0x7f.1", "IP address"),
    ("https://us.example.com:8443", "default https port"),
    ("https://us.example.com:80", "default https port"),
    ("https://us.example.com:99999", "valid URL"),
    ("https://us.example.com/api/0/", "bare origin"),
    ("https://us.example.com?x=1", "bare origin"),
    ("https:///nohost", "name a host"),
    ("https://us.example.com\n", "without spaces"),
    ("javascript:alert(1)", "https"),
    ("https://" + "a" * 600 + ".com", "short"),
])
def test_hostile_region_urls_are_refused_naming_the_rule(url: str, rule: str) -> None:
    with pytest.raises(RegionUrlRefused) as refused:
        check_region_url(url, api_host=API_HOST, allowed_hosts=ALLOWED)
    assert rule in str(refused.value)
    assert "evil" not in str(refused.value)
