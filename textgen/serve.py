"""``textgen serve``: trained runs behind an OpenAI-compatible HTTP API (Starlette on uvicorn).

The HTTP layer only: OpenAI-shaped requests become the public API's requests
(``textgen.SampleRequest``; the field names come from sampling.py's declaration), each model
steps its requests together in one ``textgen.Batch`` (continuous batching: a request joins the
running batch at the next step and leaves when done, so concurrent clients cost little more
than one), and results go back as JSON or server-sent events. No sampling arithmetic lives here.

Endpoints: ``POST /v1/completions`` (``model``, ``prompt`` as a string or a list, ``max_tokens``
= 16 by default, ``temperature``, ``top_p``, ``n``, ``stop``, ``seed``, ``stream``; textgen's own
``top_k``, ``min_p`` and ``style``), ``GET /v1/models``, ``GET /health``, ``GET /`` and
``GET /models/NAME`` (the page ``textgen export`` writes, served live). A token is a character,
or a word for word-level runs. Fields textgen cannot honour (``suffix``, ``logprobs``, ``echo``,
``best_of`` > n, penalties other than 0, ``logit_bias``) are refused with a 400 naming them;
errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from . import Batch, PrimeError, SampleRequest, SamplingError, TextgenError, load, page_html
from .errors import ServeError
from .sampling import server_fields

DEFAULT_MAX_TOKENS = 16  # as OpenAI's completions API
STEP_SLICE = 0.005  # seconds of batch steps between two looks at new requests and clients
UNSUPPORTED = {  # OpenAI fields textgen cannot honour, and the values that mean "not used"
    "suffix": (None, ""), "logprobs": (None,), "echo": (None, False),
    "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}
IGNORED = {"user"}  # accepted and not used: an end-user id for the caller's own logs


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # require "Authorization: Bearer <key>" on /v1/
    max_chars: int = 16384  # tokens generated per request, over all its choices
    max_concurrent: int = 64  # requests generating at once (their samples share one batch)
    max_queued: int = 256  # requests waiting for a slot; beyond: 429
    max_body: int = 1_000_000  # bytes of a request body; beyond: 413
    cors_origins: tuple[str, ...] = ()
    grace: float = 30.0  # seconds in-flight requests may take to finish after SIGTERM/SIGINT
    chunk_ms: float = 50.0  # a stream's chunks at most this often (its first one at once)


class ApiError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param,
                          "code": self.code}}


# ----------------------------------------------------------------------------- requests


@dataclass
class Completion:
    """One POST /v1/completions, parsed: the requests (one per prompt) of one model."""

    model: str
    requests: list[SampleRequest]
    stream: bool
    include_usage: bool = False


def parse_completion(body: bytes, models: dict, limits: ServeConfig) -> Completion:
    """The request body -> a Completion; ApiError (400/404) for anything textgen cannot do."""
    data = _json(body)
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    fields = server_fields()
    unknown = sorted(set(data) - set(fields) - set(UNSUPPORTED) - IGNORED
                     - {"model", "stream", "stream_options", "best_of"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}", param=unknown[0])
    for name, unused in UNSUPPORTED.items():
        if name in data and not any(data[name] == u and type(data[name]) is type(u)
                                    for u in unused):
            raise ApiError(400, f"{name} is not supported by textgen; leave it out", param=name)
    model = data.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "model must be the name of a served model (GET /v1/models)",
                       param="model")
    if model not in models:
        raise ApiError(404, f"the model {model!r} does not exist; served: "
                       f"{', '.join(models)}", param="model", code="model_not_found")
    stream = _flag(data, "stream")
    prompts = _prompts(data.get("prompt", ""))
    settings = {fields[k]: v for k, v in data.items()  # null: the default, as OpenAI
                if k in fields and k != "prompt" and v is not None}
    settings.setdefault("tokens", DEFAULT_MAX_TOKENS)
    n = settings.get("n", 1)
    best_of = data.get("best_of")
    if best_of is not None and (type(best_of) is not int or best_of != n):
        raise ApiError(400, "best_of must equal n (textgen returns every sample)",
                       param="best_of")
    requests = [_request(prompt, settings) for prompt in prompts]
    total = sum(r.tokens * r.n for r in requests)
    if total > limits.max_chars:
        raise ApiError(400, f"this request asks for {total:,} tokens (max_tokens x n x "
                       f"prompts); this server gives at most {limits.max_chars:,}",
                       param="max_tokens")
    options = data.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise ApiError(400, 'stream_options must be an object such as {"include_usage": true}',
                       param="stream_options")
    return Completion(model, requests, stream, _flag(options, "include_usage"))


def _json(body: bytes):
    def constant(name):
        raise ApiError(400, f"{name} is not a JSON number; send finite numbers")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=constant)
    except ApiError:
        raise
    except ValueError as e:
        if "int_max_str_digits" in str(e) or "integer string conversion" in str(e):
            raise ApiError(400, "a number in the request has over 4,300 digits") from None
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None
    except RecursionError as e:
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None


def _flag(data: dict, name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false", param=name)
    return value


def _prompts(prompt) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    raise ApiError(400, "prompt must be a string or a non-empty list of strings (token ids "
                   "are not supported: send text)", param="prompt")


def _request(prompt: str, settings: dict) -> SampleRequest:
    names = {v: k for k, v in server_fields().items()}
    try:
        return SampleRequest(prime=prompt or None, **settings)
    except SamplingError as e:
        raise ApiError(400, str(e), param=names.get(e.field, e.field)) from None
    except TypeError as e:  # a value of an unhashable or odd type
        raise ApiError(400, f"bad value: {e}") from None


# ----------------------------------------------------------------------------- one model


class RowStream:
    """A sample's text as the client gets it: without the stop string that ended it (OpenAI's
    rule), so the last characters that could begin a stop are held back until they cannot."""

    def __init__(self, stops):
        self.stops = stops or ()
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.raw, self.sent, self.stopped = "", 0, False

    def add(self, text: str) -> str:
        self.raw += text
        recent = self.raw[-(self.hold + len(text) + 1):]
        self.stopped = self.stopped or any(s in recent for s in self.stops)
        if self.stopped:  # the sample ends at a stop string: ``finish`` sends the rest
            return ""
        safe = len(self.raw) - self.hold
        if safe <= self.sent:
            return ""
        out, self.sent = self.raw[self.sent:safe], safe
        return out

    def finish(self, final: str) -> str:
        """The rest of ``final`` (the sample's whole text, stop removed) not yet sent."""
        out, self.sent = final[self.sent:], len(final)
        return out


@dataclass
class Ticket:
    """A request waiting for, then holding, rows of a model's batch; its new text goes to
    ``queue`` as {(job index, row): text}, one dict per slice of steps, and a final None."""

    jobs: list
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    async def wait(self, seconds: float) -> bool:
        """Wait until the request is done, or ``seconds`` at most; whether it is done."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), seconds)
        return self.finished.is_set()


class Model:
    """One served run: its generator, its batch and the loop that steps it."""

    def __init__(self, name: str, run: Path, limits: ServeConfig):
        self.name, self.run, self.limits = name, run, limits
        self.created = int(run.stat().st_mtime)  # read once: the folder may go later
        self.generator = load(run)
        self.page = page_html(run)
        self.batch = Batch(self.generator.network, self.generator.vocab)
        self.waiting: deque[Ticket] = deque()
        self.running: dict[int, Ticket] = {}  # id(job) -> its ticket
        self.wake = asyncio.Event()
        self.news = threading.Event()  # a request arrived or left: end the current slice
        self.task: asyncio.Task | None = None

    def submit(self, ticket: Ticket) -> None:
        """Queue ``ticket`` (it starts at the next step if a slot is free); ApiError 429 when
        every slot and every place in the queue is taken."""
        running = len({id(t) for t in self.running.values()})
        if running + len(self.waiting) >= self.limits.max_concurrent + self.limits.max_queued:
            raise ApiError(429, f"the server is busy ({running} requests running, "
                           f"{len(self.waiting)} queued); retry later", code="queue_full",
                           kind="rate_limit_exceeded")
        self.waiting.append(ticket)
        self.news.set()
        self.wake.set()

    def leave(self, ticket: Ticket) -> None:
        """The client went away: its rows leave the batch at the next step."""
        ticket.cancel()
        if ticket in self.waiting:
            self.waiting.remove(ticket)
        self.news.set()

    def _admit(self) -> None:
        while self.waiting and len({id(t) for t in self.running.values()}) < \
                self.limits.max_concurrent:
            ticket = self.waiting.popleft()
            for job in ticket.jobs:
                self.running[id(job)] = ticket
                self.batch.add(job)

    def _steps(self) -> list:
        """Batch steps for up to STEP_SLICE seconds, or until something arrives or leaves;
        runs in a worker thread (NumPy releases the GIL in its matrix products)."""
        self.news.clear()
        end, events = time.monotonic() + STEP_SLICE, []
        while self.batch.jobs and not self.news.is_set():
            events.extend(self.batch.step())
            if time.monotonic() > end or all(j.finished for j in self.batch.jobs):
                break
        return events

    async def loop(self) -> None:
        while True:
            self._admit()
            if not self.batch.jobs:
                self.wake.clear()
                await self.wake.wait()
                continue
            events = await asyncio.to_thread(self._steps)
            news: dict[int, tuple[Ticket, dict]] = {}  # each ticket's new text, one item a slice
            for job, row, text in events:
                ticket = self.running.get(id(job))
                if ticket is not None:
                    texts = news.setdefault(id(ticket), (ticket, {}))[1]
                    texts.setdefault((ticket.jobs.index(job), row), []).append(text)
            for ticket, texts in news.values():
                ticket.queue.put_nowait({key: "".join(parts) for key, parts in texts.items()})
            self._retire()

    def _retire(self) -> None:
        for key, ticket in list(self.running.items()):
            if all(j.finished for j in ticket.jobs) and not ticket.finished.is_set():
                ticket.finished.set()
                ticket.queue.put_nowait(None)
            if ticket.finished.is_set():
                self.running.pop(key, None)


# ----------------------------------------------------------------------------- responses


def _choice(index: int, text: str, finish: str | None) -> dict:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


def _usage(jobs) -> dict:
    prompt = sum(len(j.prime_ids) for j in jobs)
    completion = sum(sum(j.progress.tokens) for j in jobs)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class Completions:
    """Runs a parsed Completion on its model: the whole JSON answer, or its SSE stream."""

    def __init__(self, completion: Completion, model: Model):
        self.c, self.model = completion, model
        self.id = f"cmpl-{uuid.uuid4().hex[:24]}"
        self.sent_chars = 0  # characters streamed so far (for the log line)
        self.created = int(time.time())
        gen = model.generator
        try:
            for req in completion.requests:
                gen.style_id(req.style)
        except TextgenError as e:  # a style this run lacks, or none for a styled run
            raise ApiError(400, str(e), param="style") from None
        try:
            self.jobs = [gen.job(req, keep=True) for req in completion.requests]
        except PrimeError as e:
            raise ApiError(400, str(e), param="prompt") from None
        except SamplingError as e:
            raise ApiError(400, str(e), param={v: k for k, v in server_fields().items()}
                           .get(e.field, e.field)) from None
        fed = sum(len(j.prime_ids) * j.n for j in self.jobs)  # each fed one step at a time
        if fed > model.limits.max_chars:
            raise ApiError(400, f"the prompts come to {fed:,} tokens (times n); this server "
                           f"feeds at most {model.limits.max_chars:,}: send a shorter prompt "
                           "(the model reads it one token at a time)", param="prompt")
        self.ticket = Ticket(self.jobs)

    def _index(self, job_index: int, row: int) -> int:
        return job_index * self.c.requests[0].n + row  # choices: prompt by prompt, n each

    def _envelope(self, choices: list, usage: dict | None = None) -> dict:
        out = {"id": self.id, "object": "text_completion", "created": self.created,
               "model": self.c.model, "choices": choices}
        if usage is not None:
            out["usage"] = usage
        return out

    def start(self) -> None:
        """Join the model's queue (before any response is sent: a full queue is a 429)."""
        self.model.submit(self.ticket)

    async def answer(self, gone: Callable[[], Awaitable[bool]]) -> dict | None:
        """The whole answer; None if ``gone()`` says the client went away first (looked at
        every second: its rows then leave the batch)."""
        try:
            while not await self.ticket.wait(1.0):
                if await gone():
                    return None
        finally:
            self.model.leave(self.ticket)
        choices = []
        for j, job in enumerate(self.jobs):
            for s in job.samples():
                choices.append(_choice(self._index(j, s.index), _strip(s, job), s.finish_reason))
        return self._envelope(choices, _usage(self.jobs))

    async def events(self):
        """The SSE stream: a chunk per choice with new text, the finish reasons, [DONE]."""
        rows = {(j, b): RowStream(job.req.stop) for j, job in enumerate(self.jobs)
                for b in range(job.n)}
        interval, sent = self.model.limits.chunk_ms / 1000, None
        try:
            while True:
                if sent is not None and interval:  # gather what comes until the next chunk
                    wait = interval - (time.monotonic() - sent)
                    if wait > 0:  # (or until the request is done)
                        await self.ticket.wait(wait)
                item = await self.ticket.queue.get()
                items = [item]
                while not self.ticket.queue.empty():
                    items.append(self.ticket.queue.get_nowait())
                done = None in items
                texts: dict = {}
                for it in (i for i in items if i is not None):
                    for key, text in it.items():
                        texts[key] = texts.get(key, "") + rows[key].add(text)
                for (j, b), text in texts.items():
                    if text:
                        yield self._sse([_choice(self._index(j, b), text, None)])
                        sent = time.monotonic()
                if done:
                    break
            for j, job in enumerate(self.jobs):
                for s in job.samples():
                    rest = rows[(j, s.index)].finish(_strip(s, job))
                    yield self._sse([_choice(self._index(j, s.index), rest, s.finish_reason)])
            if self.c.include_usage:
                yield self._sse([], _usage(self.jobs))
            yield "data: [DONE]\n\n"
        finally:
            self.model.leave(self.ticket)

    def _sse(self, choices: list, usage: dict | None = None) -> str:
        self.sent_chars += sum(len(choice["text"]) for choice in choices)
        return f"data: {json.dumps(self._envelope(choices, usage), ensure_ascii=False)}\n\n"


def _strip(sample, job) -> str:
    """A finished sample's text without the stop string that ended it."""
    if sample.finish_reason == "stop":
        ends = [(sample.text.endswith(s), len(s)) for s in job.req.stop or ()]
        cut = max((n for hit, n in ends if hit), default=0)
        return sample.text[: len(sample.text) - cut]
    return sample.text


# ----------------------------------------------------------------------------- the app


def _log(line: str) -> None:  # one line per request (and per start and stop) to stderr
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", file=sys.stderr, flush=True)


async def _body(request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is over {limit:,} bytes", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over {limit:,} bytes",
                           code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _authorised(request, key: str | None) -> bool:
    if key is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())


def _error(e: ApiError):
    from starlette.responses import JSONResponse

    return JSONResponse(e.body(), status_code=e.status)


UNAUTHORISED = ("a valid API key is needed: Authorization: Bearer KEY", "invalid_api_key")


class Handlers:
    """The endpoints, over the served models."""

    def __init__(self, models: dict[str, Model], config: ServeConfig):
        self.models, self.config = models, config

    async def completions(self, request):
        from starlette.responses import JSONResponse, Response, StreamingResponse

        start = time.monotonic()
        if not _authorised(request, self.config.api_key):
            return _error(ApiError(401, UNAUTHORISED[0], code=UNAUTHORISED[1]))
        try:
            c = parse_completion(await _body(request, self.config.max_body), self.models,
                                 self.config)
            run = Completions(c, self.models[c.model])
            run.start()
            if c.stream:
                return StreamingResponse(self._logged(run, start),
                                         media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            answer = await run.answer(request.is_disconnected)
        except ApiError as e:
            _log(f"POST /v1/completions {e.status} {e}")
            return _error(e)
        if answer is None:
            _log(f"POST /v1/completions client went away model={c.model} "
                 f"{time.monotonic() - start:.3f}s")
            return Response(status_code=499)  # nobody reads it (nginx's "client closed")
        chars = sum(len(ch["text"]) for ch in answer["choices"])
        _log(f"POST /v1/completions 200 model={c.model} chars={chars} "
             f"{time.monotonic() - start:.3f}s")
        return JSONResponse(answer)

    async def _logged(self, run: Completions, start: float):
        try:
            async for chunk in run.events():
                yield chunk
        except Exception as e:  # a bug: logged with its type, the stream ends
            _log(f"POST /v1/completions stream failed: {type(e).__name__}: {e}")
            raise
        finally:
            _log(f"POST /v1/completions 200 stream model={run.c.model} "
                 f"chars={run.sent_chars} {time.monotonic() - start:.3f}s")

    async def list_models(self, request):
        from starlette.responses import JSONResponse

        if not _authorised(request, self.config.api_key):
            return _error(ApiError(401, UNAUTHORISED[0], code=UNAUTHORISED[1]))
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": m.created,
             "owned_by": "textgen"} for name, m in self.models.items()]})

    async def health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", "models": {
            name: {"rows": m.batch.rows, "running": len({id(t) for t in m.running.values()}),
                   "queued": len(m.waiting)} for name, m in self.models.items()}})

    async def index(self, request):
        from html import escape

        from starlette.responses import HTMLResponse

        items = "".join(f'<li><a href="/models/{escape(n)}">{escape(n)}</a></li>'
                        for n in self.models)
        return HTMLResponse(f"<!DOCTYPE html><html lang=en><meta charset=utf-8><title>textgen"
                            f"</title><h1>textgen</h1><ul>{items}</ul>"
                            "<p>API: POST /v1/completions, GET /v1/models</p></html>")

    async def page(self, request):
        from starlette.responses import HTMLResponse

        model = self.models.get(request.path_params["name"])
        if model is None:
            return _error(ApiError(404, "no such model", code="model_not_found"))
        return HTMLResponse(model.page)

    async def not_found(self, request, exc):
        status = getattr(exc, "status_code", 404)
        what = "method not allowed" if status == 405 else "no such endpoint"
        return _error(ApiError(status, f"{what}: {request.method} {request.url.path}"))


def create_app(runs: dict[str, Path], config: ServeConfig = ServeConfig()):

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.routing import Route

    models = {name: Model(name, path, config) for name, path in runs.items()}
    h = Handlers(models, config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for m in models.values():
            m.task = asyncio.create_task(m.loop())
        yield
        for m in models.values():
            m.task.cancel()

    middleware = [Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                             allow_methods=["GET", "POST"],
                             allow_headers=["Authorization", "Content-Type"])
                  ] if config.cors_origins else []
    return Starlette(routes=[Route("/v1/completions", h.completions, methods=["POST"]),
                             Route("/v1/models", h.list_models), Route("/health", h.health),
                             Route("/", h.index), Route("/models/{name}", h.page)],
                     middleware=middleware, lifespan=lifespan,
                     exception_handlers={404: h.not_found, 405: h.not_found})


def _listen(host: str, port: int):
    """A socket bound to ``host``:``port``; ServeError (one line) when that cannot be."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise ServeError(f"cannot listen on {host} port {port}: {e.strerror or e}; choose "
                         "another --port (or --host)") from None
    return sock


def serve(runs: dict[str, Path], config: ServeConfig = ServeConfig()) -> None:
    """Run the server until SIGTERM or SIGINT, then stop accepting, let in-flight requests
    finish (``config.grace`` seconds at most) and return."""
    import signal

    import uvicorn

    sock = _listen(config.host, config.port)  # first: a port in use fails at once
    app = create_app(runs, config)

    class Server(uvicorn.Server):
        def capture_signals(self):  # ours below: exit 0 after a graceful stop, not the signal
            return contextlib.nullcontext()

    server = Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                   timeout_graceful_shutdown=config.grace, access_log=False))

    def stop(signum, frame):
        if server.should_exit:
            _log(f"{signal.Signals(signum).name} again: stopping now")
            server.force_exit = True
        else:
            _log(f"{signal.Signals(signum).name}: finishing requests in flight "
                 f"(at most {config.grace:g} s), then stopping")
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        host = f"[{config.host}]" if ":" in config.host else config.host
        _log(f"serving {', '.join(runs)} on http://{host}:{sock.getsockname()[1]}")
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
