"""Structured output with llguidance: every result of response_format json_object / json_schema and
of a Lark or GBNF grammar parses and validates (jsonschema), greedy and sampled, streamed and not,
through create_chat_completion and generate; the real SmolLM2 (and its 2-layer cut for speed)."""
from __future__ import annotations

import json

import pytest

import pyrt

from helpers import models_dir, smollm2_first_layers

pytest.importorskip("gguf", reason="reading the GGUF model needs the 'gguf' package")
pytest.importorskip("tokenizers", reason="the LLM tokenizer needs the 'tokenizers' package")
pytest.importorskip("llguidance", reason="structured output needs llguidance (the structured extra)")
jsonschema = pytest.importorskip("jsonschema")

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False}
ITEM = {"type": "object", "properties": {
    "colour": {"enum": ["red", "green", "blue"]}, "in_stock": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
    "required": ["colour", "in_stock", "tags"], "additionalProperties": False}


def _path():
    found = sorted((models_dir() / "smollm2").glob("*.gguf"))
    if not found:
        pytest.skip("SmolLM2 GGUF not found (tools/fetch_models.py or PYRT_MODELS)")
    return found[0]


@pytest.fixture(scope="module")
def full_model():
    return pyrt.LanguageModel(_path(), context_length=256)


@pytest.fixture(scope="module")
def tiny_model():
    return smollm2_first_layers(2, context_length=256)


def _schema_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}


def test_real_model_fills_a_schema(full_model):
    out = full_model.create_chat_completion(
        [{"role": "user", "content": "Describe Ada Lovelace, who died aged 36, as JSON."}],
        max_tokens=40, temperature=0, response_format=_schema_format(PERSON))
    text = out["choices"][0]["message"]["content"]
    print(text)
    assert out["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("schema", [PERSON, ITEM], ids=["person", "item"])
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0, top_p=0.95, seed=3),
                                      dict(temperature=1.5, seed=8)], ids=["greedy", "top_p", "hot"])
def test_every_output_validates(tiny_model, schema, sampling):
    out = tiny_model.create_chat_completion([{"role": "user", "content": "Answer in JSON."}], max_tokens=80,
                                            response_format=_schema_format(schema), **sampling)
    assert out["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), schema)


def test_json_object_stream_and_generate(tiny_model):
    fmt = {"type": "json_schema", "json_schema": {"name": "small", "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
        "additionalProperties": False}}}
    chunks = tiny_model.create_chat_completion([{"role": "user", "content": "JSON please"}], max_tokens=30,
                                               temperature=0, response_format=fmt, stream=True)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert json.loads(text) in ({"ok": True}, {"ok": False})
    assert json.loads(tiny_model.generate("JSON please:", max_new_tokens=30, response_format=fmt)) in (
        {"ok": True}, {"ok": False})
    obj = tiny_model.create_completion("A JSON object:", max_tokens=120, temperature=0,
                                       response_format={"type": "json_object"})
    if obj["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(obj["choices"][0]["text"]), dict)
    else:  # cut by max_tokens: still a prefix of an object
        assert obj["choices"][0]["text"].startswith("{")


@pytest.mark.parametrize("grammar, allowed", [
    ('start: "yes" | "no"', {"yes", "no"}),                                  # Lark
    ('root ::= ("red" | "green") " " [0-9] [0-9]?', None),                   # GBNF
])
def test_grammars(tiny_model, grammar, allowed):
    import re

    for seed in range(3):
        text = tiny_model.create_completion("Answer:", max_tokens=10, temperature=1.0, seed=seed,
                                            grammar=grammar)["choices"][0]["text"]
        assert text in allowed if allowed else re.fullmatch(r"(red|green) [0-9][0-9]?", text), text


def test_structured_errors_are_typed(tiny_model):
    with pytest.raises(pyrt.ArgumentError):
        tiny_model.create_completion("x", grammar="start: (((")
    with pytest.raises(pyrt.ArgumentError):
        tiny_model.create_completion("x", grammar='start: "a"', response_format={"type": "json_object"})
    with pytest.raises(pyrt.ArgumentTypeError):
        tiny_model.create_chat_completion([{"role": "user", "content": "x"}],
                                          response_format={"type": "json_schema", "json_schema": {"schema": 5}})
