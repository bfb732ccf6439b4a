#!/usr/bin/env python3
"""A scripted "browser" for Tollgate's token tests: opens the URL given as the only argument
(as `$BROWSER URL` would) and walks the test issuer's pages (tests/oidc/issuer.mjs with
oidc-provider's devInteractions): every page's first form is submitted with its hidden fields,
the login form filled with $LOGIN (a subject such as user-bob; any password), a device-code
form with the code from the URL. Cookies are kept, redirects followed, up to the final page
(the redirect to `tollgate login`'s loopback listener, or the device flow's success page).

$DENY=1 cancels at the consent page instead (the user refuses). Exits non-zero when a page
answers an error or no final page is reached. Standard library only.
"""
import http.cookiejar
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.form = None  # (action, [(name, value)])
        self.in_form = False
        self.abort = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.form is None:
            self.form = (a.get("action") or "", [])
            self.in_form = True
        elif tag == "input" and self.in_form and a.get("name"):
            self.form[1].append((a["name"], a.get("value") or ""))
        elif tag == "a" and (a.get("href") or "").endswith("/abort"):
            self.abort = a["href"]

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False


def main():
    url = sys.argv[1]
    login = os.environ.get("LOGIN", "user-bob")
    deny = os.environ.get("DENY") == "1"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    response = opener.open(url, timeout=10)
    for _ in range(12):
        body = response.read().decode("utf-8", "replace")
        page = Page()
        page.feed(body)
        if page.form is None:
            print(f"final page {urllib.parse.urlsplit(response.geturl()).path}")
            return 0
        action, fields = page.form
        values = dict(fields)
        if "login" in values:
            values["login"] = login
            values["password"] = "any"
        elif deny and page.abort:
            response = opener.open(urllib.parse.urljoin(response.geturl(), page.abort), timeout=10)
            continue
        data = urllib.parse.urlencode(values).encode()
        response = opener.open(urllib.parse.urljoin(response.geturl(), action), data, timeout=10)
    print("no final page after 12 steps", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except urllib.error.HTTPError as error:
        print(f"browser: {error.code} at {error.url}: {error.read()[:300]!r}", file=sys.stderr)
        sys.exit(1)
