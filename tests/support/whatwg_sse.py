"""An event-stream parser that follows the WHATWG HTML standard to the letter (§9.2.6,
"Interpreting an event stream"), for checking what the gateway writes. Not a client:
no reconnection, no network; bytes in, dispatched events out.

Differences from a browser's EventSource are none that matter for framing: it reports
`retry` values and comments too, so tests can check every field round-trips.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Event:
    """A dispatched event: its type (`message` by default), data and last event id."""

    type: str
    data: str
    last_event_id: str


@dataclass
class Parser:
    """The standard's parser state; feed it with `decode`, read `events`, `comments`,
    `retries`."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    last_event_id: str = ""
    _data: str = ""
    _type: str = ""
    _id_buffer: str = ""
    _pending: str = ""
    _started: bool = False
    _after_cr: bool = False

    def decode(self, text: str) -> None:
        """Text as it arrives, split anywhere."""
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # one leading BOM is ignored
        for char in text:
            if self._after_cr:
                self._after_cr = False
                if char == "\n":  # CR LF is one line end
                    continue
            if char == "\r":
                self._after_cr = True
                self._line(self._pending)
                self._pending = ""
            elif char == "\n":
                self._line(self._pending)
                self._pending = ""
            else:
                self._pending += char

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        self._field(name, value)

    def _field(self, name: str, value: str) -> None:
        if name == "event":
            self._type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value and value.isascii() and value.isdigit():
            self.retries.append(int(value))
        # any other field name is ignored

    def _dispatch(self) -> None:
        self.last_event_id = self._id_buffer
        if self._data == "":
            self._type = ""
            return
        data = self._data[:-1] if self._data.endswith("\n") else self._data
        self.events.append(Event(self._type or "message", data, self.last_event_id))
        self._data = ""
        self._type = ""


def parse(raw: bytes, cuts: list[int] | None = None) -> Parser:
    """Parse `raw` (UTF-8, as the standard decodes the whole stream), its text fed in
    pieces cut at the character offsets `cuts`: a CR at the end of one piece and an LF at
    the start of the next must still be one line end."""
    text = raw.decode("utf-8")
    parser = Parser()
    start = 0
    for cut in [*sorted({c for c in cuts or [] if 0 < c < len(text)}), len(text)]:
        parser.decode(text[start:cut])
        start = cut
    return parser
