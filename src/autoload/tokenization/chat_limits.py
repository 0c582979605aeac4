"""Bounds on rendering a chat template: the template comes from the repo, so it is untrusted code.

Jinja's sandbox stops escapes into Python, not work: `{% for i in range(100000) %}{% for j in range(100000) %}`
runs 10^10 steps and `{{ 'x' * 10**10 }}` allocates 10 GB. Every render of one conversation gets a budget:

* time: 10 s (`AUTOLOAD_CHAT_TEMPLATE_TIMEOUT`, seconds), checked at every loop step, call and piece of output;
* steps: 1,000,000 loop iterations and calls in all (`AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS`); `range()` keeps Jinja's
  sandbox limit of 100,000 items;
* size: 16 Mi characters (`AUTOLOAD_CHAT_TEMPLATE_MAX_CHARS`) for the rendered text and for any string, list or
  printed value built on the way: `*`, `+`, `%`, `**` and `~` check their operands before computing; str methods and
  filters that pad, repeat or join (center, ljust, zfill, replace, join, indent, format, batch, sum, tojson, ...)
  check their arguments; `{% set %}` blocks, macros and every `{{ ... }}` check their text before it is built.

Hitting a limit raises `ChatTemplateError`, naming the template, the limit and the variable that raises it. The checks
are a few attribute reads per operation: ordinary templates render exactly as before, at the same speed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import ChatTemplateError

_ENV_SECONDS, _ENV_STEPS, _ENV_CHARS = ("AUTOLOAD_CHAT_TEMPLATE_TIMEOUT", "AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS",
                                        "AUTOLOAD_CHAT_TEMPLATE_MAX_CHARS")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class ChatTemplateLimits:
    """Per-conversation render limits: wall-clock seconds, steps (loop iterations + calls), characters of any string
    built (the output included). `render(..., render_limits=...)` takes one; the default comes from `from_env()`."""

    seconds: float = 10.0
    steps: int = 1_000_000
    chars: int = 16 * 2**20

    @classmethod
    def from_env(cls) -> ChatTemplateLimits:
        """The defaults, with any of the three environment variables applied."""
        values = {}
        for field, name, kind in (("seconds", _ENV_SECONDS, float), ("steps", _ENV_STEPS, int),
                                  ("chars", _ENV_CHARS, int)):
            text = os.environ.get(name)
            if text:
                try:
                    values[field] = kind(text)
                except ValueError:
                    raise ValueError(f"{name}={text!r} is not a{' whole' if kind is int else ''} number.") from None
        return cls(**values)


class Budget:
    """What one render may still spend (see `spending`)."""

    __slots__ = ("limits", "source", "deadline", "steps")

    def __init__(self, limits: ChatTemplateLimits, source: str):
        self.limits, self.source = limits, source
        self.deadline = time.monotonic() + limits.seconds
        self.steps = 0

    def step(self) -> None:
        """One loop iteration or call; the clock is read every 16 steps (each step's work is bounded by the size
        checks, so a step is short)."""
        self.steps += 1
        if self.steps > self.limits.steps:
            raise self.error(f"took more than {self.limits.steps:,} steps (loop iterations and calls)", _ENV_STEPS)
        if not self.steps & 15 and time.monotonic() > self.deadline:
            raise self.error(f"ran for more than {self.limits.seconds:g} s", _ENV_SECONDS)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.error(f"ran for more than {self.limits.seconds:g} s", _ENV_SECONDS)

    def check_size(self, chars: int, what: str, unit: str = "characters") -> None:
        if chars > self.limits.chars:
            raise self.error(f"would build {what} of about {chars:,} {unit}, over the limit of "
                             f"{self.limits.chars:,}", _ENV_CHARS)

    def error(self, what: str, variable: str) -> ChatTemplateError:
        return ChatTemplateError(f"The chat template {self.source} {what}, so rendering was stopped. Templates come "
                                 f"with the repo and are untrusted code; if this one is genuine, raise the limit with "
                                 f"the environment variable {variable}.")


_budget: ContextVar[Budget | None] = ContextVar("autoload_chat_budget", default=None)


@contextlib.contextmanager
def spending(limits: ChatTemplateLimits, source: str):
    """The budget of one render, found by the sandbox hooks (in this thread or task) until the block ends."""
    budget = Budget(limits, source)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def current_budget() -> Budget:
    """The budget of the render in progress (a fresh default one outside `render()`, e.g. at compile time)."""
    return _budget.get() or Budget(ChatTemplateLimits(), "")


def text_size(value, cap: int) -> int:
    """About how many characters `str(value)` has, counting no further than just past `cap` (no recursion)."""
    if type(value) is str:
        return len(value)
    total, stack = 0, [value]
    while stack and total <= cap:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2  # quotes in a repr
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1  # decimal digits
        else:  # a namespace prints its attributes; other values print short
            total += 16
            attributes = getattr(item, "__dict__", None)  # never a plain getattr: Undefined would raise
            if isinstance(attributes, dict) and isinstance(attributes.get("_Namespace__attrs"), dict):
                stack.append(attributes["_Namespace__attrs"])
    return total


def _sized(budget: Budget, value, what: str) -> int:
    size = text_size(value, budget.limits.chars)
    budget.check_size(size, what)
    return size


def _check_format(budget: Budget, fmt, args) -> None:
    """`fmt % args` and `fmt.format(...)`: field widths and precisions in the format string, star widths, and the
    arguments' text all count towards the result."""
    if not isinstance(fmt, str):
        return
    widths = [int(number) for number in _NUMBER.findall(fmt) if len(number) >= 6]
    if "*" in fmt:
        widths += [a for a in (args if isinstance(args, tuple) else (args,)) if isinstance(a, int)]
    budget.check_size(len(fmt) + max(widths, default=0) + text_size(args, budget.limits.chars),
                      "a formatted string")


# -- the sandbox ------------------------------------------------------------------------------------------------


def bounded_sandbox(base: type) -> type:
    """A subclass of `base` (jinja2's ImmutableSandboxedEnvironment) with every check of the module docstring; call
    `install_limits()` on the instance once its filters and globals are set."""
    from jinja2 import nodes
    from jinja2.runtime import LoopContext
    from jinja2.visitor import NodeTransformer

    def environment_call(name: str, args: list, lineno: int):
        return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), args, [], None, None, lineno=lineno)

    class CountLoopsAndConcats(NodeTransformer):
        """`{% for x in xs %}` iterates `environment.bounded_loop(xs)`; `a ~ b` becomes
        `environment.bounded_concat(a, b)`."""

        def visit_For(self, node):
            node = self.generic_visit(node)
            node.iter = environment_call("bounded_loop", [node.iter], node.lineno)
            return node

        def visit_Concat(self, node):
            return environment_call("bounded_concat", [self.visit(n) for n in node.nodes], node.lineno)

    class BoundedSandbox(base):
        intercepted_binops = frozenset({"*", "+", "%", "**"})

        def install_limits(self) -> None:
            """Hooks on this instance; called once its filters and globals are final (they get wrapped)."""
            self.finalize = _finalize
            self.concat = _join_buffer
            self.globals["range"] = _range
            self.globals["lipsum"] = _lipsum(self.globals["lipsum"])
            for name, check in _FILTER_CHECKS.items():
                self.filters[name] = _guard_filter(self.filters[name], check)

        def _parse(self, source, name, filename):
            return CountLoopsAndConcats().visit(super()._parse(source, name, filename))

        @staticmethod
        def bounded_loop(iterable):
            return _Counted(iterable)

        @staticmethod
        def bounded_concat(*parts):
            budget = current_budget()
            budget.check_size(sum(text_size(part, budget.limits.chars) for part in parts), "a ~ concatenation")
            return "".join(map(str, parts))

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's signature)
            budget = current_budget()
            budget.step()
            if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive for
                args = (_Counted(args[0]), *args[1:])
            target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
            owner = getattr(target, "__self__", None)
            if isinstance(owner, str):
                args = _check_str_method(budget, owner, getattr(target, "__name__", ""), args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)

        def call_binop(self, context, operator, left, right):
            budget = current_budget()
            if operator == "+":
                if type(left) is str and type(right) is str:  # the common case, kept short
                    if len(left) + len(right) > budget.limits.chars:
                        budget.check_size(len(left) + len(right), "a string")
                    return left + right
                if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                    budget.check_size(text_size(left, budget.limits.chars) + text_size(right, budget.limits.chars),
                                      "a concatenation")
            elif operator == "*":
                for sequence, count in ((left, right), (right, left)):
                    if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and count > 1:
                        budget.check_size(text_size(sequence, budget.limits.chars) * count, "a repetition")
            elif operator == "%":
                _check_format(budget, left, right)
            elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
                if abs(left) > 1 and left.bit_length() * right > 65536:
                    raise budget.error(f"would compute {left} ** {right}, a number of more than 65,536 bits",
                                       _ENV_CHARS)
            return super().call_binop(context, operator, left, right)

    return BoundedSandbox


class _Counted:
    """An iterable that charges the render's budget one step per item; `len()` still works when it can."""

    __slots__ = ("iterable",)

    def __init__(self, iterable):
        self.iterable = iterable

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self):
        step = current_budget().step
        for item in self.iterable:
            step()
            yield item


def _finalize(value):
    """Every `{{ ... }}`: the text `str()` would build from a list, dict, ... may not exceed the size limit (a string
    exists already: whatever built it was checked)."""
    if type(value) is not str and not isinstance(value, (int, float)) and value is not None:
        _sized(current_budget(), value, "an output")
    return value


def _join_buffer(parts) -> str:
    """`environment.concat`: joins the buffers of `{% set %}` blocks, macros and `{% filter %}` blocks."""
    parts = parts if isinstance(parts, list) else list(parts)
    budget = current_budget()
    budget.check_size(sum(len(p) if type(p) is str else text_size(p, budget.limits.chars) for p in parts), "a block")
    budget.check_time()
    return "".join(parts)


def _range(*args):
    from jinja2.sandbox import MAX_RANGE
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise ChatTemplateError(f"The chat template {current_budget().source} asked for a range() of {len(items):,} "
                                f"items; Jinja's sandbox allows at most {MAX_RANGE:,}, so rendering was stopped.")
    return items


def _lipsum(generate):
    @functools.wraps(generate)
    def lipsum(n=5, html=True, min=20, max=100):  # noqa: A002 (jinja's names)
        budget = current_budget()
        if isinstance(n, int) and isinstance(max, int):
            budget.check_size(n * max * 12, "lorem ipsum")
        return generate(n, html, min, max)
    return lipsum


def _check_str_method(budget: Budget, text: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """Before a str method that can grow its string runs: the size of its result. Returns the (materialised) args."""
    if name in ("ljust", "rjust", "center", "zfill"):
        width = args[0] if args else kwargs.get("width")
        if isinstance(width, int):
            budget.check_size(width, f"a str.{name}() result")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            budget.check_size(len(text) + text.count("\t") * tabsize, "a str.expandtabs() result")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        count = text.count(old) if old else len(text) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        budget.check_size(len(text) + count * len(new), "a str.replace() result")
    elif name == "join" and args:
        items = list(args[0])
        budget.check_size(sum(text_size(i, budget.limits.chars) for i in items) + len(text) * len(items),
                          "a str.join() result")
        return (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_format(budget, text, (*args, *kwargs.values()))
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        budget.check_size(len(text) * longest, "a str.translate() result")
    return args


# -- filters: each check sees the filter's own arguments (after any context argument) and returns None, or a
# materialised replacement for the first one (an iterator it had to count) --------------------------------------


def _guard_filter(function, check):
    from jinja2.utils import _PassArg
    skip = 1 if _PassArg.from_obj(function) is not None else 0

    @functools.wraps(function)
    def guarded(*args, **kwargs):
        replacement = check(current_budget(), *args[skip:], **kwargs)
        if replacement is not None:
            args = (*args[:skip], replacement, *args[skip + 1:])
        return function(*args, **kwargs)
    return guarded


def _center(budget, value, width=80, *rest, **kwargs):
    if isinstance(width, int):
        budget.check_size(max(width, text_size(value, budget.limits.chars)), "a centered string")


def _indent(budget, value, width=4, *rest, **kwargs):
    size = _sized(budget, value, "an indented string")
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = value.count("\n") + 1 if isinstance(value, str) else 1
    budget.check_size(size + lines * pad, "an indented string")


def _join(budget, value, d="", *rest, **kwargs):
    items = list(value)
    separator = len(d) if isinstance(d, str) else 8
    budget.check_size(sum(text_size(i, budget.limits.chars) for i in items) + separator * len(items), "a joined string")
    return items


def _replace(budget, value, old="", new="", count=None, *rest, **kwargs):
    if isinstance(value, str) and isinstance(old, str) and isinstance(new, str):
        times = value.count(old) if old else len(value) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        budget.check_size(len(value) + times * len(new), "a replaced string")
    else:
        _sized(budget, value, "a replaced string")


def _format(budget, value, *args, **kwargs):
    _check_format(budget, value, (*args, *kwargs.values()))


def _batch_or_slice(budget, value, count=1, *rest, **kwargs):
    if isinstance(count, int):
        budget.check_size(count, "batches or slices", "lists")


def _sum(budget, iterable, attribute=None, start=0, *rest, **kwargs):
    items = list(iterable)
    if isinstance(start, (str, list, tuple)):
        budget.check_size(text_size(start, budget.limits.chars) + sum(text_size(i, budget.limits.chars)
                                                                      for i in items), "a sum of sequences")
    return items


def _wordwrap(budget, value, width=79, break_long_words=True, wrapstring=None, *rest, **kwargs):
    size = _sized(budget, value, "a wrapped string")
    if isinstance(width, int) and width > 0:
        newline = len(wrapstring) if isinstance(wrapstring, str) else 1
        budget.check_size(size + (size // width + 1) * newline, "a wrapped string")


def _whole_value(budget, value, *rest, **kwargs):
    _sized(budget, value, "a string")


def _tojson(budget, value, ensure_ascii=False, indent=None, *rest, **kwargs):
    pad = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    budget.check_size(text_size(value, budget.limits.chars) * (1 + max(pad, 0)), "a JSON string")


_FILTER_CHECKS = {
    "center": _center, "indent": _indent, "join": _join, "replace": _replace, "format": _format,
    "batch": _batch_or_slice, "slice": _batch_or_slice, "sum": _sum, "wordwrap": _wordwrap, "string": _whole_value,
    "pprint": _whole_value, "tojson": _tojson,
}
