"""How tfgate writes its log: in a thread of its own, through a bounded queue, with repeated
warnings and errors rate-limited, as text lines or JSON objects.

``start`` puts one handler on the root logger: a ``BoundedQueueHandler``, which only queues a
record (the access log's ``Record`` as it is, to be rendered later; any other record with its
message already formatted), so that a call never waits for the disk. A
``logging.handlers.QueueListener`` thread takes records off the queue and writes them. The
queue holds ``capacity`` records; when the writer falls that far behind, new records are
dropped and counted, and the next record that fits is preceded by a warning saying how many
were lost. ``LogPipeline.stop`` writes what is still queued, and is called on shutdown.

``RateLimit``, a filter on that handler, lets through every access line but at most ``burst``
warnings and errors of one cause (the same logger and message template, and for a traceback
the same exception type raised at the same place) per ``window`` seconds; the next one after
the window says how many similar lines were suppressed. It tracks at most ``max_causes``
causes, forgetting the oldest.

No asyncio here: the thread and the queue are the standard library's.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Full, Queue
from typing import Final, TextIO

import orjson

from tfgate.calls import Record

ACCESS: Final = "tfgate.access"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
_summary_logger = logging.getLogger("tfgate.logs")


def rfc3339(created: float) -> str:
    """A LogRecord's time as RFC 3339 in UTC, with milliseconds: 2026-12-02T00:14:41.123Z."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: an access record's ``Record.fields``, after its ``time``; any
    other record as ``time``, ``level``, ``logger``, ``message`` and, with a traceback,
    ``traceback``."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, Record):
            return orjson.dumps({"time": rfc3339(record.created), **record.msg.fields()}).decode()
        out: dict[str, object] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["traceback"] = record.exc_text
        return orjson.dumps(out).decode()


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format`` ("text" or "json", tfgate.config.Config.log_format)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class BoundedQueueHandler(logging.handlers.QueueHandler):
    """Queues records without ever blocking; drops them, counting, when the queue is full."""

    queue: Queue[logging.LogRecord]

    def __init__(self, bounded: Queue[logging.LogRecord]) -> None:
        super().__init__(bounded)
        self.dropped = 0
        self._traceback = logging.Formatter()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if isinstance(record.msg, Record):
            return record  # finished and never changed again: rendered by the writer
        # Anything else is formatted here, as the standard QueueHandler does, since its
        # arguments (and a traceback's frames) may change once the caller goes on; but the
        # level, logger and time stay fields, for the writer's formatter.
        prepared = copy.copy(record)
        prepared.msg = record.getMessage()
        prepared.args = None
        if record.exc_info:
            prepared.exc_text = record.exc_text or self._traceback.formatException(record.exc_info)
            prepared.exc_info = None
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        # Under the handler's lock (logging.Handler.handle): the count needs no lock of its own.
        if self.dropped:
            lost = _summary_logger.makeRecord(
                _summary_logger.name,
                logging.WARNING,
                __file__,
                0,
                "%d log lines dropped: the log writer fell behind (a slow or stuck disk)",
                (self.dropped,),
                None,
            )
            try:
                self.queue.put_nowait(self.prepare(lost))
                self.dropped = 0
            except Full:
                self.dropped += 1
                return
        try:
            self.queue.put_nowait(record)
        except Full:
            self.dropped += 1


@dataclass(slots=True)
class _Cause:
    start: float  # when its window began
    seen: int  # lines in the window
    suppressed: int  # of which not written


def _cause(record: logging.LogRecord) -> tuple[str, str, str, int]:
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    exc_type, where, line = "", "", 0
    if record.exc_info and record.exc_info[0] is not None:
        exc_type = record.exc_info[0].__qualname__
        tb = record.exc_info[2]
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
    return (record.name, template + "\0" + exc_type, where, line)


class RateLimit(logging.Filter):
    """At most ``burst`` warnings and errors of one cause per ``window`` seconds (see the
    module docstring); every other record passes."""

    def __init__(
        self,
        burst: int = 5,
        window: float = 10.0,
        max_causes: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.max_causes = max_causes
        self._clock = clock
        self._causes: dict[tuple[str, str, str, int], _Cause] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name == ACCESS:
            return True
        key = _cause(record)
        now = self._clock()
        with self._lock:
            cause = self._causes.get(key)
            if cause is not None and now - cause.start < self.window:
                cause.seen += 1
                if cause.seen <= self.burst:
                    return True
                cause.suppressed += 1
                return False
            if cause is None:
                if len(self._causes) >= self.max_causes:
                    del self._causes[next(iter(self._causes))]  # the oldest
                self._causes[key] = _Cause(now, 1, 0)
                return True
            suppressed, began = cause.suppressed, cause.start
            cause.start, cause.seen, cause.suppressed = now, 1, 0
        if suppressed:
            # In place (a filter cannot return a new record before Python 3.12); tfgate's
            # handler is the root logger's only one.
            record.msg = (
                f"{record.getMessage()} ({suppressed} similar lines suppressed in the last "
                f"{now - began:.0f} s)"
            )
            record.args = None
        return True

    def pending(self) -> list[tuple[str, str, int]]:
        """(logger, template, count) for each cause with lines suppressed and not yet said."""
        with self._lock:
            return [
                (key[0], key[1].split("\0", 1)[0], cause.suppressed)
                for key, cause in self._causes.items()
                if cause.suppressed
            ]


class _Listener(logging.handlers.QueueListener):
    """The standard listener, but its stop waits a bounded time, for room in a full queue
    (the standard one fails) and for the writer."""

    _thread: threading.Thread | None

    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel, timeout=_STOP_WAIT)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._thread is not None:
            self.enqueue_sentinel()
            self._thread.join(_STOP_WAIT)
            self._thread = None


# Seconds shutdown waits for the writer to take the last lines (a stuck disk must not hold it).
_STOP_WAIT: Final = 5.0


class LogPipeline:
    """The root logger's handler, its queue and its writer thread (see the module docstring)."""

    def __init__(
        self,
        writer: logging.Handler,
        level: str = "INFO",
        capacity: int = 10_000,
        limit: RateLimit | None = None,
    ) -> None:
        self.writer = writer
        self.level = level.upper()
        self.queue: Queue[logging.LogRecord] = Queue(capacity)
        self.handler = BoundedQueueHandler(self.queue)
        self.limit = limit or RateLimit()
        self.handler.addFilter(self.limit)
        self._listener = _Listener(self.queue, writer, respect_handler_level=True)
        self._root_level = logging.NOTSET
        self._started = False

    def start(self) -> None:
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(self.level)
        root.addHandler(self.handler)
        self._listener.start()
        self._started = True

    def stop(self) -> None:
        """Writes the suppressed-line counts not yet said and every queued line, then stops."""
        if not self._started:
            return
        self._started = False
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for name, template, count in self.limit.pending():
            self.handler.handle(
                _summary_logger.makeRecord(
                    _summary_logger.name,
                    logging.WARNING,
                    __file__,
                    0,
                    "%d similar lines suppressed (%s: %s)",
                    (count, name, template[:200]),
                    None,
                )
            )
        # A stuck writer: what is queued is lost, and shutdown is not held.
        with contextlib.suppress(Full):
            self._listener.stop()
        root.setLevel(self._root_level)
        self.writer.flush()


def start(
    log_level: str,
    log_format: str,
    stream: TextIO | None = None,
    writer: logging.Handler | None = None,
) -> LogPipeline:
    """Sends every log record through the pipeline to ``writer`` (by default a stream handler
    on ``stream``, standard error, in ``log_format``); returns it, for ``stop`` on shutdown."""
    if writer is None:
        writer = logging.StreamHandler(stream or sys.stderr)
        writer.setFormatter(formatter(log_format))
    pipeline = LogPipeline(writer, log_level)
    pipeline.start()
    return pipeline
