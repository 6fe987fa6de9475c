#!/usr/bin/env python3
"""Check a security.txt with an independent validator: DigitalTrustCenter's `sectxt` (PyPI,
pinned in .ci/run), which implements RFC 9116.

    check_security_txt.py https://HOST:PORT        the RFC 9116 location, fetched by sectxt
                                                   itself (https, Content-Type, charset, fields)
    check_security_txt.py https://HOST:PORT PATH   another file, read by sectxt's parser

The server's CA comes from REQUESTS_CA_BUNDLE. Prints one JSON object: valid, errors,
recommendations, and the values of the fields it read.
"""
import json
import sys

import requests
import sectxt

location = sys.argv[1]
extra = {}
if len(sys.argv) > 2:
    url = f"{location}{sys.argv[2]}"
    response = requests.get(url, timeout=10)
    extra = {"status": response.status_code, "content_type": response.headers.get("content-type")}
    parsed = sectxt.Parser(response.content, urls=url)
else:
    parsed = sectxt.SecurityTXT(location)
fields = {}
for line in parsed.lines:
    if line["type"] == "field":
        fields.setdefault(line["field_name"], []).append(line["value"])
print(json.dumps({"valid": parsed.is_valid(), "errors": parsed.errors,
                  "recommendations": parsed.recommendations, "fields": fields, **extra}))
