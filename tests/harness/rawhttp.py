"""Requests that `requests` cannot make: from another loopback source address, with a
malformed Host header, or plain HTTP to the TLS port."""

import http.client
import json
import ssl
from types import SimpleNamespace

from urllib3 import HTTPHeaderDict


class RawResponse:
    """Just enough of `requests.Response` for harness.assertions."""

    def __init__(self, status, headers, body):
        self.status_code = status
        self.raw = SimpleNamespace(headers=HTTPHeaderDict())
        for name, value in headers:
            self.raw.headers.add(name, value)
        self.headers = self.raw.headers
        self.content = body
        self.text = body.decode(errors="replace")

    def json(self):
        return json.loads(self.content)


def request(port, method, path, headers=(), body=None, source="127.0.0.1", tls=True, host="127.0.0.1"):
    """One request on a fresh connection from `source`, with exactly the given Host header."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context,
                                                 source_address=(source, 0), timeout=10)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0), timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return RawResponse(response.status, response.getheaders(), response.read())
    finally:
        connection.close()
