"""A minimal Faust app for the foundation test: forward one topic to another.

Configured by environment variables so the test can run it as a real worker
process (``faust -A forward_app worker``) against the session's broker.
"""

import os

import faust

app = faust.App(
    os.environ["FWD_APP_ID"],
    broker=f"kafka://{os.environ['FWD_BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ["FWD_DATADIR"],
    web_port=int(os.environ["FWD_WEB_PORT"]),
    web_host="127.0.0.1",
    producer_acks=-1,
    topic_partitions=4,
)
source = app.topic(os.environ["FWD_IN"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["FWD_OUT"], key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def forward(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        await sink.send(key=event.key, value=b"fwd:" + event.value)
