"""Streamers: `generate(..., streamer=s)` calls `s.put(ids)` with the prompt and then each new token, and
`s.end()` at the end. Text is re-decoded from the accumulated ids each step and only the stable part is
emitted (the reference's rules): everything up to a newline (flushed), a trailing CJK character at once,
new text made only of letters/marks/digits/spaces at once, otherwise up to the last space — so a word whose
next token may still change it (a multi-byte character, a merge) is held back.

`TokenStreamer` hands over token ids instead of text, and `BackgroundGeneration` runs generate in a thread
while the caller iterates a streamer: the one threading helper behind every `stream_chat`.
"""

from __future__ import annotations

import queue
import threading
import unicodedata

from .decode import generate

_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


class TextStreamer:
    """Print generated text as it becomes stable (batch size 1). `skip_prompt=True` leaves the prompt out;
    `decode_kwargs` go to `tokenizer.decode` (e.g. skip_special_tokens=True). Printing uses
    `print(..., flush=True)`, which shows progressively in terminals and Jupyter alike."""

    def __init__(self, tokenizer, skip_prompt: bool = False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache: list[int] = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def put(self, value) -> None:
        if len(value.shape) > 1 and value.shape[0] > 1:
            raise ValueError("TextStreamer only supports batch size 1 (one prompt, num_return_sequences=1).")
        if len(value.shape) > 1:
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.next_tokens_are_prompt = False
        self.token_cache.extend(value.tolist())
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith("\n"):  # a line is complete: emit it, keep only the last token as context
            printable = text[self.print_len:]
            self.token_cache = self.token_cache[-1:]
            self.print_len = len(self.tokenizer.decode(self.token_cache, **self.decode_kwargs))
        elif text and _is_cjk(ord(text[-1])):
            printable = text[self.print_len:]
            self.print_len += len(printable)
        elif all(ch.isspace() or unicodedata.category(ch)[0] in "LMN" for ch in text[self.print_len:]):
            printable = text[self.print_len:]
            self.print_len += len(printable)
        else:  # hold back the last partial word
            printable = text[self.print_len:text.rfind(" ") + 1]
            self.print_len += len(printable)
        self.on_finalized_text(printable)

    def end(self) -> None:
        """Flush what is left and finish the line."""
        if self.token_cache:
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            printable = text[self.print_len:]
        else:
            printable = ""
        self.token_cache, self.print_len, self.next_tokens_are_prompt = [], 0, True
        self.on_finalized_text(printable, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        print(text, flush=True, end=None if stream_end else "")


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class TextIteratorStreamer(TextStreamer):
    """Text chunks on a queue, iterated in another thread than generate's — for web apps:

        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        Thread(target=model.generate, kwargs=dict(**inputs, max_new_tokens=64, streamer=streamer)).start()
        for chunk in streamer: ...

    `timeout` (seconds) bounds each wait (queue.Empty is raised). If generate fails, iteration raises a
    RuntimeError carrying the error instead of waiting forever. `cancel()` asks generate to stop after the
    current token (e.g. when the client went away).
    """

    def __init__(self, tokenizer, skip_prompt: bool = False, timeout: float | None = None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: queue.Queue = queue.Queue()
        self.stop_signal = None
        self.timeout = timeout
        self.cancelled = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def on_error(self, error: BaseException) -> None:
        self.text_queue.put(_Failure(error))

    def cancel(self) -> None:
        self.cancelled = True

    def __iter__(self):
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value is self.stop_signal:
            raise StopIteration()
        if isinstance(value, _Failure):
            raise RuntimeError(f"generate() failed in its thread: {value.error!r}") from value.error
        return value


class TokenStreamer:
    """Each new token id (batch of one) on a queue, iterated in another thread than generate's; the prompt is
    skipped. `cancel()` asks generate to stop after the current token."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._prompt_seen = False
        self.cancelled = False

    def put(self, ids) -> None:
        if not self._prompt_seen:  # generate() first puts the prompt
            self._prompt_seen = True
            return
        self._queue.put(int(ids.reshape(-1)[0]))

    def end(self) -> None:
        self._queue.put(None)

    def on_error(self, error: BaseException) -> None:
        self._queue.put(None)

    def cancel(self) -> None:
        self.cancelled = True

    def __iter__(self):
        while True:
            token = self._queue.get()
            if token is None:
                return
            yield token


class BackgroundGeneration:
    """`generate(model, streamer=streamer, **generate_kwargs)` in a background thread, consumed here:

        run = BackgroundGeneration(model, TokenStreamer(), max_new_tokens=64, ...)
        for token in run: ...          # what the streamer yields, as tokens arrive
        run.output                     # generate's return value, once the loop has ended

    Leaving the loop early (closing the generator around it) cancels generation and waits for the thread; an
    error raised by generate is raised again in the iterating thread, as itself."""

    def __init__(self, model, streamer, **generate_kwargs):
        self.model, self.streamer, self.generate_kwargs = model, streamer, generate_kwargs
        self.output = None
        self._error: BaseException | None = None

    def _work(self) -> None:
        try:
            self.output = generate(self.model, streamer=self.streamer, **self.generate_kwargs)
        except BaseException as err:  # noqa: BLE001 - generate told the streamer, which ends the iteration
            self._error = err

    def __iter__(self):
        thread = threading.Thread(target=self._work, name="autoload-stream", daemon=True)
        thread.start()
        try:
            yield from self.streamer
        except RuntimeError:  # TextIteratorStreamer's report of a failed generate: raise generate's own error
            thread.join()
            if self._error is None:
                raise
        finally:
            self.streamer.cancel()
            thread.join()
        if self._error is not None:
            raise self._error
