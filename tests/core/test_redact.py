"""Credentials inside URLs (core/redact.py): shown as [redacted] in the engine's own words and by
every edge; the rest of the URL kept, since it says where."""

from __future__ import annotations

import pytest

from featurerollout.core.redact import scrub, scrub_url, shown_url, url_secrets
from tests.core.test_gates import Driver, gated_spec


@pytest.mark.parametrize(("url", "shown"), [
    ("http://prometheus:9090", "http://prometheus:9090"),
    ("https://me:pa55word@prometheus.example/api", "https://me:[redacted]@prometheus.example/api"),
    ("https://ghp_t0kenvalue@gate.example/check", "https://[redacted]@gate.example/check"),
    ("http://gate.example/check?token=s3cr3t&team=shop", "http://gate.example/check?token=[redacted]&team=shop"),
    ("http://h/x?api_key=k1&X-Amz-Signature=abc&sig=z#frag",
     "http://h/x?api_key=[redacted]&X-Amz-Signature=[redacted]&sig=[redacted]#frag"),
    ("http://u:p@h:1/?access_token=t", "http://u:[redacted]@h:1/?access_token=[redacted]"),
    ("not a url", "not a url"),
])
def test_shown_url_redacts_userinfo_and_credential_parameters(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_url_secrets_and_scrub_url_take_them_out_of_any_text() -> None:
    url = "https://me:pa55word@gate.example/check?token=s3cr3t&team=shop"
    assert url_secrets(url) == ["pa55word", "s3cr3t"]
    echoed = f"POST {url} failed: the server said pa55word and s3cr3t"
    assert scrub_url(echoed, url) == ("POST https://me:[redacted]@gate.example/check?token=[redacted]&team=shop "
                                      "failed: the server said [redacted] and [redacted]")


def test_scrub_keeps_notification_urls_path_and_query_out() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXX?x=1"
    text = f"ConnectError: {url} and /services/T000/B000/XXXX?x=1 and tok3n-value"
    cleaned = scrub(text, url, "tok3n-value")
    assert "T000" not in cleaned and "tok3n" not in cleaned and "hooks.slack.com" not in cleaned


def test_the_engine_never_writes_a_gate_url_credential_in_the_status_or_an_event() -> None:
    url = "https://me:pa55word@checks.example/smoke?token=s3cr3t"
    run = Driver(gated_spec({"name": "smoke", "before": "Start", "webhook": {"url": url}}))
    first = run.tick()
    words = " ".join(event.message for event in first.actions if hasattr(event, "message"))
    assert "asking POST https://me:[redacted]@checks.example/smoke?token=[redacted]" in words
    shown = run.status.model_dump_json()
    assert "pa55word" not in shown and "s3cr3t" not in shown and "pa55word" not in words
