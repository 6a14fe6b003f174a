"""`pyrt serve`'s app end to end with the official openai client: chat, completion, streaming,
embeddings, models, 8 concurrent clients against serial answers, OpenAI-shaped errors, and a
client that disconnects mid-stream."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPTS = ["The capital of France is", "Water boils at", "The largest planet is", "One, two, three,",
           "Python is a", "The sky is", "My favourite food is", "In 1969, astronauts"]


def test_chat_completion_matches_in_process_call(client, models):
    got = client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=8, temperature=0)
    want = models["smol"].create_chat_completion(QUESTION, max_tokens=8, temperature=0)
    assert got.object == "chat.completion" and got.model == "smol"
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert got.choices[0].finish_reason == want["choices"][0]["finish_reason"]
    assert got.usage.prompt_tokens == want["usage"]["prompt_tokens"]
    assert got.usage.completion_tokens == want["usage"]["completion_tokens"] <= 8


def test_completion_and_its_stream_agree(client):
    whole = client.completions.create(model="smol", prompt=PROMPTS[0], max_tokens=8, temperature=0)
    assert whole.object == "text_completion" and whole.choices[0].text
    pieces = list(client.completions.create(model="smol", prompt=PROMPTS[0], max_tokens=8, temperature=0,
                                            stream=True))
    assert "".join(p.choices[0].text for p in pieces) == whole.choices[0].text
    assert pieces[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_chat_stream_is_server_sent_events(client, base_url):
    whole = client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=8, temperature=0,
                                                 stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    raw = httpx.post(base_url + "/v1/chat/completions", timeout=600,
                     json={"model": "smol", "messages": QUESTION, "max_tokens": 3, "stream": True})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_embeddings_equal_in_process_encode(client, models):
    texts = ["The cat sits on the mat.", "Quantized weights keep the model small.", "東京は日本の首都です。"]
    got = client.embeddings.create(model="mini", input=texts, encoding_format="float")
    want = models["mini"].encode(texts)
    assert [d.index for d in got.data] == [0, 1, 2] and got.model == "mini"
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), want, rtol=0, atol=1e-6)
    assert got.usage.prompt_tokens == sum(len(i) for i in models["mini"].tokenize(texts))
    packed = client.embeddings.create(model="mini", input=texts[0])  # the client asks for base64
    np.testing.assert_allclose(np.array(packed.data[0].embedding), want[0], rtol=0, atol=1e-6)
    short = client.embeddings.create(model="mini", input=texts[:2], dimensions=16)
    assert len(short.data[0].embedding) == 16
    np.testing.assert_allclose(np.linalg.norm(short.data[0].embedding), 1.0, atol=1e-5)


def test_models_list_and_health(client, base_url):
    listed = {m.id: m for m in client.models.list().data}
    assert set(listed) == {"smol", "mini"} and listed["smol"].owned_by == "pyrt"
    assert client.models.retrieve("mini").id == "mini"
    assert httpx.get(base_url + "/health").json()["status"] == "ok"


def test_eight_concurrent_clients_get_the_serial_answers(client):
    def ask(prompt: str) -> tuple[str, str]:
        r = client.completions.create(model="smol", prompt=prompt, max_tokens=8, temperature=0)
        return r.choices[0].text, r.choices[0].finish_reason

    serial = [ask(p) for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        concurrent = list(pool.map(ask, PROMPTS))
    assert concurrent == serial


def _error(exc_info) -> dict:
    body = exc_info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_errors_have_openai_shape_and_status(client, base_url):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=QUESTION, max_tokens=2)
    assert _error(e)["code"] == "model_not_found" and _error(e)["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=-3)
    assert _error(e)["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smol", messages=[{"content": "no role"}], max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smol", messages=QUESTION, temperature="hot", max_tokens=2)
    with pytest.raises(openai.BadRequestError):  # errors before the first chunk are JSON, not a stream
        client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=2, top_p=7, stream=True)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="smol", input="wrong kind")
    assert _error(e)["code"] == "wrong_model_kind"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mini", messages=QUESTION)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="mini", input=[])
    for route, field in (("/v1/chat/completions", "messages"), ("/v1/completions", "prompt"), ("/v1/embeddings", "input")):
        missing = httpx.post(base_url + route, json={"model": "smol" if field != "input" else "mini"}, timeout=60)
        assert missing.status_code == 400 and missing.json()["error"]["param"] == field
    no_model = httpx.post(base_url + "/v1/embeddings", json={"input": "x"}, timeout=60)  # the only encoder
    assert no_model.status_code == 200 and no_model.json()["model"] == "mini"
    bad_stream = httpx.post(base_url + "/v1/completions", json={"model": "smol", "prompt": "x", "stream": "yes"})
    assert bad_stream.status_code == 400 and bad_stream.json()["error"]["param"] == "stream"
    extra = httpx.post(base_url + "/v1/embeddings", json={"model": "mini", "input": "x", "colour": 1}, timeout=60)
    assert extra.status_code == 400 and extra.json()["error"]["param"] == "colour"
    bad_json = httpx.post(base_url + "/v1/chat/completions", content=b"{not json", timeout=60)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    assert httpx.post(base_url + "/v1/completions", json=[1, 2], timeout=60).status_code == 400
    assert httpx.get(base_url + "/v1/nothing", timeout=60).status_code == 404


class SpyStream:
    """Passes a chunk stream through, recording how many chunks were pulled and whether (and when)
    it was closed."""

    def __init__(self, chunks):
        self.chunks, self.pulled, self.closed = chunks, 0, threading.Event()

    def __iter__(self):
        return self

    def __next__(self):
        chunk = next(self.chunks)
        self.pulled += 1
        return chunk

    def close(self):
        self.closed.set()
        self.chunks.close()


def test_disconnect_mid_stream_cancels_and_frees_the_slot(client, base_url, models, monkeypatch):
    lm = models["smol"]
    opened: list = []
    original = lm.create_completion

    def spy(*args, **kwargs):
        stream = SpyStream(original(*args, **kwargs))
        opened.append(stream)
        return stream

    monkeypatch.setattr(lm, "create_completion", spy)
    body = {"model": "smol", "prompt": PROMPTS[1], "max_tokens": 400, "temperature": 0, "stream": True}
    with httpx.stream("POST", base_url + "/v1/completions", json=body, timeout=600) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    # the client is gone: the server must close the stream (cancelling the request) long before its
    # 400 tokens could have been generated
    assert opened[0].closed.wait(timeout=120), "the server did not close the stream of a gone client"
    assert opened[0].pulled < 200
    monkeypatch.undo()
    after = client.completions.create(model="smol", prompt=PROMPTS[2], max_tokens=4, temperature=0)
    assert after.choices[0].finish_reason in ("length", "stop")
