"""The lean transport's signatures are botocore's ``SigV4Auth`` signatures, byte for byte."""

from __future__ import annotations

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.aws.sigv4 import Signer, amz_date

HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.PutItem",
}


def botocore_headers(
    url: str,
    body: bytes,
    credentials: Credentials,
    region: str,
    stamp: str,
    headers: dict[str, str] = HEADERS,
) -> dict[str, str]:
    """What SigV4Auth adds to the same request (``headers``) at time ``stamp`` (its steps,
    with the time given instead of read)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    auth = SigV4Auth(credentials.get_frozen_credentials(), "dynamodb", region)
    request.context["timestamp"] = stamp
    request.headers["X-Amz-Date"] = stamp
    if credentials.token:
        request.headers["X-Amz-Security-Token"] = credentials.token
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return {k: v for k, v in request.headers.items() if k not in headers}


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=300),
    token=st.none() | st.text("abcXYZ019/+=", min_size=1, max_size=40),
    secret=st.text("abcdefXYZ0123/+", min_size=1, max_size=40),
    when=st.floats(min_value=1.5e9, max_value=2.5e9),
    endpoint=st.sampled_from(
        [
            ("http://127.0.0.1:8000", "127.0.0.1:8000"),
            ("https://dynamodb.eu-west-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com"),
            ("https://streams.dynamodb.eu-west-1.amazonaws.com:443", None),
        ]
    ),
)
def test_signatures_equal_sigv4auths(
    body: bytes, token: str | None, secret: str, when: float, endpoint: tuple[str, str | None]
) -> None:
    url, host = endpoint
    host = host or "streams.dynamodb.eu-west-1.amazonaws.com"
    credentials = Credentials("AKIDEXAMPLE", secret, token)
    stamp = amz_date(when)
    signer = Signer("dynamodb", "eu-west-1", host)
    for _ in range(2):  # the second signature uses the cached signing key
        ours = signer.sign(
            HEADERS, body, access_key="AKIDEXAMPLE", secret_key=secret, token=token, stamp=stamp
        )
        assert ours == botocore_headers(url + "/", body, credentials, "eu-west-1", stamp)


def test_a_new_day_or_secret_gets_a_new_signing_key() -> None:
    """A signer that has signed before signs as a fresh one would (its key cache)."""
    used = Signer("dynamodb", "us-east-1", "h")

    def sign(signer: Signer, secret: str, stamp: str) -> str:
        found = signer.sign(
            HEADERS, b"{}", access_key="A", secret_key=secret, token=None, stamp=stamp
        )
        return found["Authorization"]

    sign(used, "s1", "20261201T235959Z")
    for secret, stamp in (("s1", "20261202T000000Z"), ("s2", "20261202T000001Z")):
        fresh = Signer("dynamodb", "us-east-1", "h")
        assert sign(used, secret, stamp) == sign(fresh, secret, stamp)


TARGETS = [
    "DynamoDB_20120810.PutItem",
    "DynamoDB_20120810.GetItem",
    "DynamoDBStreams_20120810.GetRecords",
]


@settings(max_examples=40, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(TARGETS),
            st.none() | st.text("abcXYZ019/+=", min_size=1, max_size=20),
            st.binary(max_size=40),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_one_signer_signs_each_request_as_sigv4auth_whatever_it_signed_before(
    requests: list[tuple[str, str | None, bytes]],
) -> None:
    """The signer keeps the canonical form of each operation's headers, with and without
    a session token: every request, in any order of operations and tokens, is signed as
    ``SigV4Auth`` signs it alone."""
    signer = Signer("dynamodb", "eu-west-1", "127.0.0.1:8000")
    stamp = "20261203T082700Z"
    for target, token, body in requests:
        headers = {**HEADERS, "X-Amz-Target": target}
        credentials = Credentials("AKIDEXAMPLE", "secret", token)
        ours = signer.sign(
            headers, body, access_key="AKIDEXAMPLE", secret_key="secret", token=token, stamp=stamp
        )
        want = botocore_headers(
            "http://127.0.0.1:8000/", body, credentials, "eu-west-1", stamp, headers
        )
        assert ours == want
