"""OpenID Connect sign-in in Chromium: the sign-in page's button, the provider's own login and consent pages
(oidc-provider under node), and back on the service signed in, with the upload page of the new identity."""

from __future__ import annotations

from playwright.sync_api import expect

from .browser import browser, contexts, snap  # noqa: F401 (fixtures)


def test_sign_in_with_an_openid_provider_in_chromium(contexts, openid_provider, make_server):
    client = openid_provider.register()
    server = make_server(**openid_provider.settings(client, title="Sign in with Test SSO"))
    page = contexts().new_page()

    page.goto(server.url + "/")
    page.get_by_role("link", name="Sign in with Test SSO").click()
    page.wait_for_url(f"{openid_provider.issuer}/**")
    page.locator("input[name=login]").fill("ada")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent page

    page.wait_for_url(server.url + "/")
    page.wait_for_selector("#file-rows")
    who = page.locator(".who")
    expect(who).to_have_text("Signed in as ada")
    expect(who).to_have_attribute("title", "oidc:test:ada")
    snap(page, "oidc-signed-in")
    status = page.evaluate("async () => (await fetch('/api/files')).status")
    assert status == 200  # the session cookie the sign-in set works on the API
