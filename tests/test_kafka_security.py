"""The secured GCN Kafka consumer settings (SASL/OAUTHBEARER over TLS), exercised for real.

tansu 0.6.0, the test broker, cannot serve TLS (its ``--cert`` and ``--key``
options exclude each other, and ``--cert`` alone still listens in plain
text) and offers no OAUTHBEARER, so the settings object the listener builds
is checked against real peers instead: a TLS server on 127.0.0.1 with a
certificate from a test CA, and an OAuth2 token endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import AbstractTokenProvider

from gwfollow.config import packaged_defaults
from gwfollow.pipeline.listeners import kafka_consumer_kwargs

from .tls_certs import make_pki


async def _handshake(ctx: ssl.SSLContext, port: int) -> None:
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), 30)
    writer.close()
    await writer.wait_closed()


@pytest.fixture
async def tls_server(tmp_path):
    """A TLS echo-less server on 127.0.0.1 with a certificate from a test CA."""
    pki = make_pki(tmp_path / "pki")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(pki.cert, pki.key)

    async def serve(reader, writer):  # type: ignore[no-untyped-def]
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=sctx)
    port = server.sockets[0].getsockname()[1]
    yield pki, port
    server.close()
    await server.wait_closed()


async def test_sasl_ssl_settings_verify_the_broker_and_fetch_tokens(tls_server, tmp_path, monkeypatch,
                                                                     aiohttp_server) -> None:
    pki, port = tls_server
    calls = []

    async def token(request):  # type: ignore[no-untyped-def]
        form = await request.post()
        calls.append(dict(form))
        return web.json_response({"access_token": "tok-123", "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    auth = await aiohttp_server(app)
    cfg = dataclasses.replace(packaged_defaults().kafka, enabled=True, bootstrap=f"127.0.0.1:{port}",
                              security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", client_id="me",
                              client_secret="s3cret", token_url=f"http://127.0.0.1:{auth.port}/oauth2/token")
    cfg.validate()

    # The CA a deployment trusts comes from the system store (SSL_CERT_FILE here).
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    kw = kafka_consumer_kwargs(cfg)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "OAUTHBEARER"
    assert kw["enable_auto_commit"] is False  # offsets are committed by the listener, after the store
    ctx = kw["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    await _handshake(ctx, port)

    # A broker whose certificate no trusted CA signed is refused.
    other = make_pki(tmp_path / "other", name="someone else's CA")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca))
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(kafka_consumer_kwargs(cfg)["ssl_context"], port)

    # The token provider aiokafka calls fetches with the client credentials, once per token lifetime.
    provider = kw["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert await provider.token() == "tok-123" and await provider.token() == "tok-123"
    assert calls == [{"grant_type": "client_credentials", "client_id": "me", "client_secret": "s3cret"}]
    # aiokafka accepts the settings as a whole.
    consumer = AIOKafkaConsumer("igwn.gwalert", **kw)
    assert consumer._client._security_protocol == "SASL_SSL"


def test_plaintext_settings_carry_no_security() -> None:
    kw = kafka_consumer_kwargs(dataclasses.replace(packaged_defaults().kafka, bootstrap="127.0.0.1:9",
                                                   security_protocol="PLAINTEXT"))
    assert kw["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in kw and "sasl_mechanism" not in kw and "sasl_oauth_token_provider" not in kw
