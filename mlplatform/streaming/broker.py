"""Redis Streams operations of the consumer. Results, dead letters and acknowledgements of a batch are
written by one Lua script, atomically: a crash leaves either all of a batch written and acknowledged or
none of it, and a transaction id already in the dedup set gets no second result."""

from mlplatform.streaming.messages import (
    DeadLetter,
    Message,
    Result,
    dead_letter_fields,
    result_fields,
)
from mlplatform.streaming.settings import StreamSettings

# KEYS: output stream, dead-letter stream, input stream.  ARGV: group, max length, dedup window (s),
# dedup key prefix, then counted lists: results (id, transaction id, body), dead letters (id, payload,
# reason), ids to acknowledge. Returns, per result, its enqueue-to-result latency in ms, or -1 when the
# transaction already had a result (not written again). Time is the Redis server's, like the entry ids.
WRITE_SCRIPT = """
local group, maxlen, window, dedup = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bucket = math.floor(tonumber(t[1]) / window)
local current, previous = dedup .. bucket, dedup .. (bucket - 1)
local i, latencies = 5, {}
for r = 1, tonumber(ARGV[i]) do
  local id, txid, body = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 3
  if redis.call('SISMEMBER', previous, txid) == 1 or redis.call('SADD', current, txid) == 0 then
    latencies[r] = -1
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
      'transaction_id', txid, 'result', body, 'source_id', id, 'result_ms', now_ms)
    latencies[r] = now_ms - tonumber(string.match(id, '^(%d+)'))
  end
end
if #latencies > 0 then redis.call('EXPIRE', current, window * 2) end
i = i + 1
for d = 1, tonumber(ARGV[i]) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*',
    'source_id', ARGV[i + 1], 'payload', ARGV[i + 2], 'reason', ARGV[i + 3], 'dead_ms', now_ms)
  i = i + 3
end
i = i + 1
for a = 1, tonumber(ARGV[i]) do
  redis.call('XACK', KEYS[3], group, ARGV[i + a])
end
return latencies
"""


class Broker:
    """The input stream's consumer group, seen by one named consumer."""

    def __init__(self, settings: StreamSettings, consumer: str, client=None) -> None:
        self.settings = settings
        self.consumer = consumer
        self.redis = client or settings.client()
        self._write = self.redis.register_script(WRITE_SCRIPT)
        self._claim_cursor = "0-0"

    def ensure_group(self) -> None:
        """The group, reading the stream from its beginning (messages sent before any consumer count)."""
        import redis

        try:
            self.redis.xgroup_create(self.settings.input_stream, self.settings.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def read_own_pending(self) -> list[Message]:
        """What this consumer name was given and never acknowledged (a restart under the same name)."""
        return self._read("0")

    def read_new(self) -> list[Message]:
        return self._read(">", block=self.settings.block_ms)

    def _read(self, start: str, block: int | None = None) -> list[Message]:
        replies = self.redis.xreadgroup(
            self.settings.group,
            self.consumer,
            {self.settings.input_stream: start},
            count=self.settings.batch_size,
            block=block,
        )
        return [Message(id, fields) for _, entries in replies or [] for id, fields in entries if fields]

    def reclaim(self) -> list[tuple[Message, int]]:
        """Messages idle on any consumer for `claim_idle_ms`, taken over, with their delivery counts."""
        cursor, entries, _deleted = self.redis.xautoclaim(
            self.settings.input_stream,
            self.settings.group,
            self.consumer,
            min_idle_time=self.settings.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.settings.batch_size,
        )
        self._claim_cursor = cursor
        messages = [Message(id, fields) for id, fields in entries if fields]
        if not messages:
            return []
        pending = self.redis.xpending_range(
            self.settings.input_stream,
            self.settings.group,
            min=messages[0].id,
            max=messages[-1].id,
            count=len(messages) * 2,
            consumername=self.consumer,
        )
        deliveries = {entry["message_id"]: entry["times_delivered"] for entry in pending}
        return [(message, deliveries.get(message.id, 1)) for message in messages]

    def keep_alive(self, messages: list[Message]) -> None:
        """Reset the idle time of messages still being worked on, so nobody reclaims them meanwhile."""
        if messages:
            self.redis.xclaim(
                self.settings.input_stream,
                self.settings.group,
                self.consumer,
                min_idle_time=0,
                message_ids=[m.id for m in messages],
                justid=True,
            )

    def write(self, results: list[Result], dead: list[DeadLetter], acknowledge: list[Message]) -> list[int]:
        """Write results (once per transaction id) and dead letters and acknowledge, in one atomic step.
        Per result: its enqueue-to-result latency in ms, or -1 if it was a duplicate."""
        settings = self.settings
        args: list = [settings.group, settings.max_stream_length, settings.dedup_window_seconds]
        args += [settings.dedup_prefix, len(results)]
        args += [field for result in results for field in result_fields(result)]
        args += [len(dead), *[field for letter in dead for field in dead_letter_fields(letter)]]
        args += [len(acknowledge), *[message.id for message in acknowledge]]
        keys = [settings.output_stream, settings.dead_letter_stream, settings.input_stream]
        return [int(latency) for latency in self._write(keys=keys, args=args)]

    def lag(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acknowledged)."""
        for group in self.redis.xinfo_groups(self.settings.input_stream):
            if group["name"] == self.settings.group:
                lag = group.get("lag")
                # Redis cannot tell the lag after some deletions: count the whole stream (scales up, safe)
                undelivered = lag if lag is not None else self.redis.xlen(self.settings.input_stream)
                return int(undelivered), int(group["pending"])
        return self.redis.xlen(self.settings.input_stream), 0
