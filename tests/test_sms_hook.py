"""`POST /hooks/sms/inbound` skips FastAPI's routing and middleware (`dispatcher.app`),
and still refuses bad input with a clear 4xx, as JSON naming the problem."""

from __future__ import annotations

from tests.scenario import PHONE, County, county

__all__ = ["county"]

PATH = "/hooks/sms/inbound"


async def test_a_reply_is_answered_by_the_hook(county: County) -> None:
    await county.warn("RAIN", "red")
    await county.work()
    response = await county.client.post(PATH, data={"From": PHONE["a1"], "Body": "1"})
    assert response.status_code == 200
    assert county.client.cookies.get("jiaoying_session") is not None  # the login's, untouched
    assert "set-cookie" not in response.headers


async def test_bad_replies_get_a_clear_4xx(county: County) -> None:
    client = county.client
    missing = await client.post(PATH, data={"From": PHONE["a1"]})
    assert missing.status_code == 400
    assert missing.json() == {"detail": "form fields From and Body are required"}
    long = await client.post(PATH, data={"From": "1" * 40, "Body": "1"})
    assert long.status_code == 400 and "not a phone number" in long.json()["detail"]
    crowded = await client.post(
        PATH,
        content="&".join(f"f{i}=x" for i in range(1001)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert crowded.status_code == 400 and "unreadable form" in crowded.json()["detail"]
    broken = await client.post(
        PATH,
        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\n1\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= broken.status_code < 500 and broken.json()["detail"]
    limit = county.runtime.settings.server.max_body_bytes
    huge = await client.post(
        PATH,
        content=b"From=1&Body=" + b"1" * limit,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413 and "body too large" in huge.json()["detail"]


async def test_a_provider_callback_over_the_size_limit_is_refused(county: County) -> None:
    limit = county.runtime.settings.server.max_body_bytes
    response = await county.client.post(
        "/hooks/sms/simulated",
        content=b"MessageSid=x&Body=" + b"1" * limit,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413 and "body too large" in response.json()["detail"]


async def test_other_methods_take_the_usual_way(county: County) -> None:
    # A GET is a provider's URL check (`/hooks/{channel}/{provider}`): no such provider.
    response = await county.client.get(PATH)
    assert response.status_code == 404
    assert response.json() == {"detail": "no provider 'inbound' on channel 'sms'"}
