"""textgen serve: the real server on a free loopback port, called with the official openai
client and with raw HTTP."""

import json
import os
import signal
import socket
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import invoke

openai = pytest.importorskip("openai")
HOST = "127.0.0.1"
LONG = 2_000_000  # tokens: a request that runs for many seconds even on the tiny model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``textgen serve`` in a process of its own, on a free loopback port."""

    def __init__(self, runs, *flags, env=None):
        self.port = _free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.stderr_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-{self.port}.log"
        self.stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "textgen", "serve", *map(str, runs), "--host", HOST,
             "--port", str(self.port), *flags], stdout=subprocess.DEVNULL, stderr=self.stderr,
            env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text()

    def client(self, key="unused"):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0,
                             timeout=120)

    def post(self, body, headers=None, **kwargs):
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return httpx.post(f"{self.url}/v1/completions", content=content, timeout=120,
                          headers={"Content-Type": "application/json", **(headers or {})},
                          **kwargs)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.stderr.close()


@pytest.fixture(scope="module")
def server(trained_run):
    s = Server([f"tiny={trained_run}"], "--max-chars", str(LONG))
    yield s
    s.stop()


def test_a_completion_through_the_openai_client(server):
    c = server.client().completions.create(model="tiny", prompt="the cat", max_tokens=40,
                                           seed=3, temperature=0.8)
    assert c.object == "text_completion" and c.model == "tiny" and c.id.startswith("cmpl-")
    [choice] = c.choices
    assert choice.index == 0 and choice.finish_reason == "length" and choice.logprobs is None
    assert len(choice.text) == 40  # a token is a character here
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (7, 40)
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_the_stream_gives_the_same_text_in_chunks(server):
    client = server.client()
    whole = client.completions.create(model="tiny", prompt="a dog", max_tokens=300, seed=5)
    chunks = list(client.completions.create(model="tiny", prompt="a dog", max_tokens=300,
                                            seed=5, stream=True))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == whole.choices[0].text and len(chunks) > 2
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_stream_sends_at_most_one_chunk_per_chunk_ms(trained_run):
    s = Server([f"tiny={trained_run}"], "--chunk-ms", "200", "--max-chars", "20000")
    try:
        start = time.monotonic()
        chunks = list(s.client().completions.create(model="tiny", prompt="a", seed=2,
                                                    max_tokens=20000, stream=True))
        elapsed = time.monotonic() - start
    finally:
        s.stop()
    texts = [ch.choices[0].text for ch in chunks[:-1]]  # the last one: the finish reason
    assert sum(map(len, texts)) + len(chunks[-1].choices[0].text) == 20000
    assert 2 <= len(texts) <= elapsed / 0.2 + 1, (len(texts), elapsed)


def test_several_prompts_and_samples_come_back_in_order(server):
    client = server.client()
    c = client.completions.create(model="tiny", prompt=["the cat", "a log"], n=3,
                                  max_tokens=20, seed=9, temperature=1.0)
    assert [ch.index for ch in c.choices] == list(range(6))
    alone = client.completions.create(model="tiny", prompt="a log", n=3, max_tokens=20, seed=9)
    assert [ch.text for ch in c.choices[3:]] == [ch.text for ch in alone.choices]
    assert len({ch.text for ch in c.choices}) > 1


def test_stop_strings_end_a_sample_and_are_not_returned(server):
    client = server.client()
    args = dict(model="tiny", prompt="the", max_tokens=400, seed=1, stop=["at", "og"])
    c = client.completions.create(**args)
    [choice] = c.choices
    assert choice.finish_reason == "stop" and not choice.text.endswith(("at", "og"))
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(**args,
                                                                              stream=True))
    assert streamed == choice.text


def test_a_seeded_request_gives_the_same_text_alone_and_beside_31_others(server, trained_run):
    client = server.client()
    ask = dict(model="tiny", prompt="the cat sat", max_tokens=120, seed=42, temperature=0.9,
               extra_body={"top_k": 5, "min_p": 0.02})  # textgen's own fields
    alone = client.completions.create(**ask).choices[0].text
    results = {}

    def other(i):
        results[i] = server.client().completions.create(
            model="tiny", prompt=["a dog", "the", "on the mat"][i % 3], max_tokens=60 + i,
            seed=i, temperature=0.5 + i / 40, stream=i % 2 == 0, **(
                {"top_p": 0.9} if i % 3 == 0 else {}))

    threads = [threading.Thread(target=other, args=(i,)) for i in range(31)]
    for t in threads:
        t.start()
    beside = client.completions.create(**ask).choices[0].text
    for t in threads:
        t.join()
    assert beside == alone and len(results) == 31
    greedy = client.completions.create(model="tiny", prompt="the dog", max_tokens=80,
                                       temperature=0).choices[0].text
    cli = invoke(["sample", "--run", trained_run, "--prime", "the dog", "--chars", "80",
                  "--temperature", "0"])
    assert cli.stdout == "the dog" + greedy + "\n"


@pytest.mark.parametrize("body,status,param", [
    (b"{not json", 400, None),
    ({"model": "tiny", "prompt": "the", "temperature": "hot"}, 400, "temperature"),
    (b'{"model": "tiny", "prompt": "the", "temperature": NaN}', 400, None),
    ({"model": "tiny", "prompt": "the", "max_tokens": -5}, 400, "max_tokens"),
    ({"model": "tiny", "prompt": "the", "n": 0}, 400, "n"),
    ({"model": "tiny", "prompt": "the", "top_p": 1.5}, 400, "top_p"),
    ({"model": "tiny", "prompt": [1, 2, 3]}, 400, "prompt"),
    ({"model": "tiny", "prompt": "the", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"model": "tiny", "prompt": "the", "echo": True}, 400, "echo"),
    ({"model": "tiny", "prompt": "the", "logprobs": 2}, 400, "logprobs"),
    ({"model": "tiny", "prompt": "the", "suffix": "x"}, 400, "suffix"),
    ({"model": "tiny", "prompt": "the", "best_of": 3}, 400, "best_of"),
    ({"model": "tiny", "prompt": "the", "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"model": "tiny", "prompt": "the", "colour": "blue"}, 400, "colour"),
    ({"model": "tiny", "prompt": "the", "max_tokens": LONG + 1}, 400, "max_tokens"),
    ({"model": "tiny", "prompt": "the", "style": "sonnets"}, 400, "style"),
    ({"model": "nope", "prompt": "the"}, 404, "model"),
    ([1, 2], 400, None),
    ({"model": "tiny", "prompt": "the", "best_of": 1.0}, 400, "best_of"),
    ({"model": "tiny", "prompt": "the", "stream_options": []}, 400, "stream_options"),
    ({"model": "tiny", "prompt": "the", "stream": True, "stream_options":
      {"include_usage": "yes"}}, 400, "include_usage"),
])
def test_bad_requests_get_openai_shaped_errors(server, body, status, param):
    response = server.post(body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_a_number_of_thousands_of_digits_is_named_plainly(server):
    response = server.post(b'{"model": "tiny", "prompt": "the", "seed": ' + b"9" * 5000 + b"}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "a number in the request has over 4,300 digits"


def test_unknown_prompt_characters_are_listed(server):
    response = server.post({"model": "tiny", "prompt": "the €"})
    assert response.status_code == 400
    assert "'€' (U+20AC)" in response.json()["error"]["message"]


def test_a_huge_body_is_refused_before_it_is_read(server):
    response = server.post(b'{"model": "tiny", "prompt": "' + b"a" * 2_000_000 + b'"}')
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_unknown_endpoints_and_methods_are_json_errors(server):
    assert httpx.get(f"{server.url}/nope").status_code == 404
    response = httpx.put(f"{server.url}/v1/completions")
    assert response.status_code == 405
    assert response.json()["error"]["message"] == "method not allowed: PUT /v1/completions"


def test_pages_of_the_served_models(server):
    index = httpx.get(f"{server.url}/")
    assert index.status_code == 200 and 'href="/models/tiny"' in index.text
    page = httpx.get(f"{server.url}/models/tiny")
    assert page.status_code == 200 and 'id="textgen-data"' in page.text


def test_a_client_that_goes_away_frees_its_row(server):
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{server.url}/v1/completions", json={
                "model": "tiny", "prompt": "the", "max_tokens": LONG, "stream": True}) as r:
            lines = r.iter_lines()  # kept: a discarded iterator closes the response
            next(lines)
            health = httpx.get(f"{server.url}/health").json()
            assert health["models"]["tiny"]["rows"] == 1, (health, server.log())
    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/health").json()["models"]["tiny"]["rows"] != 0:
        assert time.monotonic() < deadline, "the row was not freed"
        time.sleep(0.05)


def test_every_request_is_logged_on_one_line(server):
    server.post({"model": "tiny", "prompt": "the", "max_tokens": 5})
    lines = [line for line in server.log().splitlines() if "POST /v1/completions" in line]
    assert any("200 model=tiny chars=5" in line for line in lines)
    assert all(line.count("\n") == 0 for line in lines)


def test_an_api_key_is_required_when_set(trained_run):
    s = Server([trained_run], "--api-key-env", "TEXTGEN_TEST_KEY",
               env={"TEXTGEN_TEST_KEY": "s3cret"})
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").completions.create(model="run", prompt="the", max_tokens=3)
        assert s.post({"model": "run", "prompt": "the"}).status_code == 401
        ok = s.client("s3cret").completions.create(model="run", prompt="the", max_tokens=3)
        assert len(ok.choices[0].text) == 3
        assert httpx.get(f"{s.url}/health").status_code == 200  # health needs no key
    finally:
        s.stop()


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(trained_run):
    s = Server([trained_run])
    result = {}

    def long_request():
        result["r"] = s.post({"model": "run", "prompt": "the", "max_tokens": 3000})

    t = threading.Thread(target=long_request)
    t.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{s.url}/health").json()["models"]["run"]["rows"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGTERM)
    t.join(timeout=120)
    assert s.proc.wait(timeout=120) == 0, s.log()
    assert result["r"].status_code == 200
    assert len(result["r"].json()["choices"][0]["text"]) == 3000
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{s.url}/health")
    assert "SIGTERM" in s.log()
    s.stop()


def test_a_full_queue_is_a_429(trained_run):
    s = Server([trained_run], "--max-concurrent", "1", "--max-queued", "0",
               "--max-chars", str(LONG))
    try:
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", f"{s.url}/v1/completions", json={
                    "model": "run", "prompt": "the", "max_tokens": LONG, "stream": True}) as r:
                lines = r.iter_lines()  # kept: a discarded iterator closes the response
                next(lines)
                busy = s.post({"model": "run", "prompt": "the", "max_tokens": 3})
        assert busy.status_code == 429 and busy.json()["error"]["type"] == "rate_limit_exceeded"
    finally:
        s.stop()


def test_serving_beyond_loopback_without_a_key_warns(trained_run, monkeypatch):
    import textgen.serve

    started = []
    monkeypatch.setattr(textgen.serve, "serve", lambda runs, config: started.append(config))
    result = invoke(["serve", trained_run, "--host", "0.0.0.0"])
    assert result.exit_code == 0 and "without an API key" in result.stderr
    assert started[0].host == "0.0.0.0" and started[0].api_key is None
    quiet = invoke(["serve", trained_run, "--host", "::1"])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    missing = invoke(["serve", trained_run, "--api-key-env", "TEXTGEN_UNSET_VARIABLE"])
    assert missing.exit_code == 2 and "is not set" in missing.stderr


def test_the_models_are_listed_after_a_run_folder_is_removed(run_copy):
    """/v1/models once read the run folder's time on every call: a 500 once it was gone."""
    s = Server([f"gone={run_copy}"])
    try:
        shutil.rmtree(run_copy)
        r = httpx.get(f"{s.url}/v1/models", timeout=60)
        assert r.status_code == 200, r.text
        assert [m["id"] for m in r.json()["data"]] == ["gone"]
    finally:
        s.stop()


@pytest.mark.parametrize("name", ["max_tokens", "n", "temperature"])
def test_a_null_field_means_its_default(server, name):
    """null once reached the sampler as None: max_tokens a 500, n a raw TypeError message,
    temperature greedy sampling instead of OpenAI's default of 1."""
    body = {"model": "tiny", "prompt": "the", "max_tokens": 30, "seed": 3}
    plain = server.post(body)
    nulled = server.post({**body, name: None})
    assert plain.status_code == nulled.status_code == 200, nulled.text
    if name == "max_tokens":
        assert len(nulled.json()["choices"][0]["text"]) == 16  # OpenAI's default
    else:
        assert nulled.json()["choices"] == plain.json()["choices"]


def test_a_port_in_use_is_one_line(trained_run):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "textgen", "serve", str(trained_run),
                                 "--port", str(port)], capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and f"cannot listen on {HOST} port {port}" in \
        result.stderr, result.stderr


def test_a_prompt_longer_than_the_limit_is_refused(trained_run):
    """A 1 MB prompt was fed a token a step for minutes, slowing every other request."""
    s = Server([f"tiny={trained_run}"], "--max-chars", "1000")
    try:
        r = s.post({"model": "tiny", "prompt": "the " * 250, "max_tokens": 1, "seed": 1})
        assert r.status_code == 200, r.text
        r = s.post({"model": "tiny", "prompt": "the " * 200, "max_tokens": 1, "n": 2})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
        assert "the prompts come to 1,600 tokens" in r.json()["error"]["message"]
    finally:
        s.stop()


def test_a_client_that_goes_away_before_a_whole_answer_frees_its_row(server):
    """Without a stream, a client that left was not noticed until its answer was done."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", timeout=1.5,
                   json={"model": "tiny", "prompt": "the", "max_tokens": LONG, "seed": 1})
    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/health").json()["models"]["tiny"]["rows"] != 0:
        assert time.monotonic() < deadline, f"the row was not freed: {server.log()}"
        time.sleep(0.1)
    assert "client went away model=tiny" in server.log()
