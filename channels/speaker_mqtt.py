"""4G/IP speakers on an MQTT broker: a command topic per speaker, reports back.

Send: publish (QoS 1) to `{topic_prefix}/{speaker address}/cmd`
`{"method": "startTts", "content", "vol", "repeat", "frameId"}`; the broker's PUBACK means
accepted, nothing more. The speaker publishes its playback result to
`{topic_prefix}/{speaker address}/reply`: `{"frameId", "result": "ok" | <reason>}`.
`listen` holds a shared subscription (`$share/jiaoying/...`, so with many workers each
report is handled once) and hands every report to the core. A speaker that never
reports is failed by the core after `speaker_confirm_timeout_s`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import aiomqtt

from channels.base import (
    CallbackReply,
    CallbackRequest,
    CallbackResponse,
    Channel,
    DeliverCallback,
    DirectReply,
    Event,
    Message,
    ProviderContext,
    ProviderFlags,
    SendError,
    SendResult,
)
from channels.speaker_http import parse_report

log = logging.getLogger(__name__)
SHARE_GROUP = "jiaoying"


class MqttSpeakerProvider:
    def __init__(self, settings: Mapping[str, Any], context: ProviderContext) -> None:
        self.name = "speaker_mqtt"
        self.channel = Channel.SPEAKER
        self.flags = ProviderFlags(reports_playback=True, listens=True)
        self._host = str(settings.get("host", "127.0.0.1"))
        self._port = int(settings.get("port", 1883))
        self._username = str(settings.get("username", "")) or None
        self._password = str(settings.get("password", "")) or None
        self.prefix = str(settings.get("topic_prefix", "jiaoying/speakers")).rstrip("/")
        self._volume = int(settings.get("volume", 80))
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        # Set once `listen` holds its subscription (tests wait on it).
        self.subscribed = asyncio.Event()

    def _new_client(self, role: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            self._host,
            self._port,
            username=self._username,
            password=self._password,
            identifier=f"jiaoying-{role}-{secrets.token_hex(6)}",
            timeout=10,
        )

    async def _publisher(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is None:
                client = self._new_client("send")
                await client.__aenter__()
                self._client = client
            return self._client

    async def send(self, message: Message) -> SendResult:
        # A fresh frame id per send, so a late report of an earlier try is not this one's.
        frame_id = f"{message.reference}:{secrets.token_hex(4)}"
        command = {
            "method": "startTts",
            "content": message.text,
            "vol": self._volume,
            "repeat": message.repeat,
            "frameId": frame_id,
        }
        topic = f"{self.prefix}/{message.to}/cmd"
        try:
            client = await self._publisher()
            await client.publish(topic, json.dumps(command, ensure_ascii=False), qos=1)
        except aiomqtt.MqttError as exc:
            await self.aclose()
            raise SendError(f"mqtt publish to {topic}: {exc}", retryable=True) from exc
        return SendResult(frame_id)

    async def listen(self, deliver: DeliverCallback) -> None:
        """Receive playback reports until cancelled, reconnecting after a lost connection."""
        topic = f"$share/{SHARE_GROUP}/{self.prefix}/+/reply"
        while True:
            try:
                async with self._new_client("listen") as client:
                    await client.subscribe(topic, qos=1)
                    self.subscribed.set()
                    async for incoming in client.messages:
                        payload = incoming.payload
                        body = payload if isinstance(payload, bytes) else str(payload).encode()
                        await deliver(
                            CallbackRequest(
                                url=f"mqtt://{self._host}:{self._port}/{incoming.topic}",
                                headers={"mqtt-topic": str(incoming.topic)},
                                body=body,
                            )
                        )
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                log.warning("mqtt listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(2)

    def parse_callback(self, request: CallbackRequest) -> list[Event]:
        return [parse_report(request.body)]

    def callback_response(self, reply: CallbackReply | None = None) -> CallbackResponse:
        return CallbackResponse(body="ok")

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult | SendError]:
        raise NotImplementedError("speaker_mqtt has no batch API (max_batch 1)")

    async def confirm_answer(self, reply: DirectReply, label: str) -> None:
        return None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                log.info("mqtt publisher was already disconnected")
