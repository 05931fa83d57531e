#!/usr/bin/env python3
"""Produce one event into fanout's Kafka and watch it arrive over WebSocket.

Usage: scripts/try.py BOOTSTRAP [WS_URL [SESSION_ID]]
  BOOTSTRAP   the address fanout printed ("embedded Kafka broker: produce to ...")
  WS_URL      default ws://127.0.0.1:3009/ws/availability
  SESSION_ID  sent as the session_id cookie (admin endpoint /ws)

Needs: pip install confluent-kafka websockets
"""
import asyncio
import json
import sys

import websockets
from confluent_kafka import Producer


async def main(bootstrap: str, url: str, session_id: str | None) -> None:
    headers = {"Cookie": f"session_id={session_id}"} if session_id else None
    async with websockets.connect(url, additional_headers=headers) as ws:
        print("<", await ws.recv())
        await ws.send(json.dumps({"type": "subscribe", "filters": {"course_id": "PIANO-101"}}))
        print("<", await ws.recv())
        event = {
            "topic": "booking.created",
            "timestamp": "2026-11-23T10:00:00Z",
            "payload": {"data": {"booking_id": "bk-1", "course_id": "PIANO-101", "schedule_id": "sch-123",
                                 "student_id": "st-9", "slots_remaining": 4}},
        }
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        producer.produce("booking.created", json.dumps(event).encode())
        producer.flush(10)
        print("> produced booking.created for PIANO-101")
        print("<", await asyncio.wait_for(ws.recv(), 10))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    url = sys.argv[2] if len(sys.argv) > 2 else "ws://127.0.0.1:3009/ws/availability"
    asyncio.run(main(sys.argv[1], url, sys.argv[3] if len(sys.argv) > 3 else None))
