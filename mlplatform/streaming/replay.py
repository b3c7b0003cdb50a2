"""`mlplatform stream-replay`: a landed day's transactions sent to the input stream, in event order."""

import time
from collections.abc import Iterator

from mlplatform.streaming.messages import encode
from mlplatform.streaming.settings import StreamSettings

CHUNK = 500  # messages per pipelined round trip


def landed_transactions(landing_zone, day: str) -> list[dict]:
    """Every transaction landed for `day` (all its files), oldest first, as `Transaction` fields."""
    import pandas as pd

    from mlplatform.ingestion.validation import read_landing_file
    from mlplatform.schemas import TRANSACTIONS

    files = landing_zone.files("transactions", day)
    if not files:
        raise FileNotFoundError(f"no transactions landed for {day} in {landing_zone.landing_dir}")
    frame = pd.concat([read_landing_file(path, TRANSACTIONS) for path in files], ignore_index=True)
    frame = frame.sort_values(["event_ts", "transaction_id"], ignore_index=True)
    frame["amount"] = frame["amount"].astype(float)
    return frame[list(TRANSACTIONS.columns)].to_dict("records")


def chunks(rows: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def send(settings: StreamSettings, rows: list[dict], rate: float = 0.0, client=None) -> list[str]:
    """XADD every row to the input stream (at most `rate` per second when above 0); the entry ids."""
    redis = client or settings.client()
    ids: list[str] = []
    size = max(1, min(CHUNK, int(rate))) if rate > 0 else CHUNK
    started = time.monotonic()
    for chunk in chunks(rows, size):
        pipe = redis.pipeline(transaction=False)
        for row in chunk:
            pipe.xadd(settings.input_stream, encode(row))
        ids += pipe.execute()
        if rate > 0:
            time.sleep(max(0.0, started + len(ids) / rate - time.monotonic()))
    return ids
