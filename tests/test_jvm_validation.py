"""The JVM validator (``jvm/udf`` ``RecordValidator``) against ``transforms.schema``, line by line.

On the stream path valid records never reach Python, so the JVM must agree
with ``decode_json_line`` + ``EventSchema.validate`` exactly: the same lines
blank, invalid or valid, and the same typed values (doubles to the bit). The
lines are adversarial: number spellings at every edge of int64, 2**53 and
double range; escapes and surrogates; calendar and offset edges of ISO
timestamps; JSON syntax slips; and random edits of real records.
"""

from __future__ import annotations

import dataclasses
import json
import random
import struct

import pytest

from stream_jobs import pipeline
from stream_jobs.compile_catalog import validation_spec
from stream_jobs.job import run
from stream_jobs.outputs import dead_letters, feature_rows
from runtime.events_io import decode_json_line
from examples.transactions.features.generate import StreamSpec, generate
from tests.adversarial import adversarial_events
from tests.test_stream_path import assert_matches_reference
from transforms import Invalid
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from transforms.schema import EventSchema, Field, FieldType, finite_non_negative, non_empty
from tests.factories import stream_spec

NOT_AFTER = 1_714_600_000_000  # 2024-05-01T21:46:40Z: inside the generated streams, so some events are too new
NO_BOUND = 2**63 - 1
#: Every field type, optional fields and fields without a rule (the reference schema has none of these).
OTHER = EventSchema(
    name="other", version=1,
    fields=(Field("id", FieldType.STRING, non_empty), Field("n", FieldType.INT64),
            Field("x", FieldType.FLOAT64, required=False), Field("note", FieldType.STRING, required=False),
            Field("t", FieldType.TIMESTAMP_MS), Field("ok", FieldType.BOOL), Field("flag", FieldType.BOOL, required=False)),
    event_id="id", entity_keys=("id",), event_time="t")

NUMBERS = ["0", "-0", "0.0", "-0.0", "1", "-1", "1.5", "-1.5", "1e3", "1E3", "1e+3", "1e-3", "1.0e0", "0e0", "-0e0",
           "9007199254740992", "9007199254740993", "-9007199254740992", "-9007199254740993", "9223372036854775807",
           "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "1" * 25, "-" + "9" * 30,
           "1e400", "-1e400", "1e-400", "4.9e-324", "2.4703282292062328e-324", "2.4703282292062327e-324",
           "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "0.1", "0.30000000000000004",
           "123456789012345678901234567890.5", "1e99999999999999999999", "NaN", "Infinity", "-Infinity", "-Inf",
           "nan", "01", "-01", "1.", "1.e3", ".5", "+1", "1e", "1e+", "1e-", "-", "--1", "0x10", "1_000", "1.5.5",
           "1714564800000", "4102444799999", "4102444800000", "2", "12.5", "2.675", "1E-7", "100e-2"]
STRINGS = ['""', '"a"', '"EUR"', '"eur"', '"EU"', '"EURO"', '"E\\u0055R"', '"\\u0045\\u0055\\u0052"', '"\\u00e9"',
           '"\\ud83d\\ude00"', '"\\ud800"', '"\\udc00"', '"\\ud800x"', '"\\ud800\\u0041"', '"\\udc00\\ud800"',
           '"\\u12"', '"\\uZZZZ"', '"\\u00G0"', '"\\uFFFF"', '"\\u0000"', '"\\x41"', '"\\/"', '"a\\"b"', '"a\\\\"',
           '"a\tb"', '"a\x00b"', '"a\x1fb"', '"a\x7fb"', '"😀"', '"ＵＳＤ"', '"٠"', '"abc', '"\\"', '"\\u"', '"\\a"',
           '"\\b\\f\\n\\r\\t"', '"u-1"', '" "', '"\u00a0"', '"\u2028"']
TIMES = ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.250Z", "2024-05-01T12:00:00.2Z", "2024-05-01T12:00:00.123456Z",
         "2024-05-01T12:00:00.123000Z", "2024-05-01T12:00:00.123000000Z", "2024-05-01T12:00:00.1230000001Z",
         "2024-05-01T12:00:00.1234Z", "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00-05:30",
         "2024-05-01T12:00:00+23:59", "2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+12:60",
         "2024-05-01T12:00:00-00:00", "2024-05-01T12:00:00z", "2024-05-01t12:00:00Z", "2024-02-29T00:00:00Z",
         "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
         "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-05-00T00:00:00Z", "0000-01-01T00:00:00Z",
         "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2024-05-01T24:00:00Z", "2024-05-01T23:60:00Z",
         "2024-05-01T23:59:60Z", "2024-05-01 12:00:00Z", "2024-05-01T12:00:00", "2024-05-01T12:00Z",
         "1970-01-01T00:00:00.001Z", "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00Z", "1970-01-01T01:00:00.001+01:00",
         "2099-12-31T23:59:59.999Z", "2100-01-01T00:00:00Z", "2100-01-01T00:59:59.999+01:00",
         "2024-05-01T21:46:40Z", "2024-05-01T21:46:40.001Z", "٢٠٢٤-05-01T12:00:00Z", "２０２４-05-01T12:00:00Z",
         "2024-05-01T12:00:00+0100", "2024-05-01T12:00:00+01", "24-05-01T12:00:00Z", "2024-5-01T12:00:00Z",
         " 2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z ", "+2024-05-01T12:00:00Z"]
LITERALS = ["true", "false", "null", "[]", "{}", "[1]", '{"a": 1}', "tru", "nul", "True", "None", '["EUR"]']
BLANKS = ["", " ", "\t", "  \t ", "\u00a0", "\u3000", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u200b", "\ufeff", "\r"]
EDIT_ALPHABET = '{}[]:,"\\ 0123456789.eE+-tfnNIaZT\u00e9\t\r\n\u00a0😀'


def values_for(field: Field) -> list[str]:
    common = NUMBERS + STRINGS + LITERALS
    return common + [json.dumps(t) for t in TIMES] if field.type is FieldType.TIMESTAMP_MS else common


def field_variants(schema: EventSchema, base: dict) -> list[str]:
    """One line per (field, value spelling), the other fields as in ``base``; plus shape variants."""
    lines = []
    for f in schema.fields:
        for value in values_for(f):
            parts = [f'"{g.name}": {value if g is f else json.dumps(base[g.name])}' for g in schema.fields]
            lines.append("{" + ", ".join(parts) + "}")
    body = [f'"{g.name}": {json.dumps(base[g.name])}' for g in schema.fields]
    lines += [
        "{" + ", ".join(body) + "}",
        "{" + ",".join(b.replace(": ", ":") for b in body) + "}",
        " \t\r\n{ " + " ,\n".join(b.replace(": ", " :\t") for b in body) + " }\r\n ",
        "{" + ", ".join(body) + ",}",
        "{" + ", ".join(body) + "} x",
        "{" + ", ".join(body) + "}}",
        "{" + ", ".join(body) + "}{}",
        "{" + ", ".join(body[1:]) + "}",  # a field missing
        "{" + ", ".join(body + ['"extra": 1']) + "}",
        "{" + ", ".join(body + ['"extra": {"deep": [1, {"x": null}]}']) + "}",
        "{" + ", ".join(body + [body[0]]) + "}",  # a duplicate key
        "{" + ", ".join([body[0].replace(schema.fields[0].name, schema.fields[0].name[0] + "\\u00" +
                                         format(ord(schema.fields[0].name[1]), "02x") + schema.fields[0].name[2:], 1)]
                        + body[1:]) + "}",  # an escaped key naming a field
        "\ufeff{" + ", ".join(body) + "}",
        "\u00a0{" + ", ".join(body) + "}",
        "{" + ", ".join(body) + "}\u00a0",
        "[" + "{" + ", ".join(body) + "}" + "]",
        "{" + ", ".join(body).replace(": ", " = ") + "}",
        "{'" + "', '".join(g.name for g in schema.fields) + "'}",
        "{}", "[]", "1", '"text"', "null", "{", "}", "{" * 5000 + "}" * 5000, "[" * 100_000,
    ]
    return lines + BLANKS


def edits(rng: random.Random, line: str, n: int) -> list[str]:
    """Random one-character edits and truncations of ``line``."""
    out = []
    for _ in range(n):
        i = rng.randrange(len(line) + 1)
        kind = rng.randrange(4)
        if kind == 0:
            out.append(line[:i] + rng.choice(EDIT_ALPHABET) + line[i:])
        elif kind == 1 and i < len(line):
            out.append(line[:i] + line[i + 1:])
        elif kind == 2 and i < len(line):
            out.append(line[:i] + rng.choice(EDIT_ALPHABET) + line[i + 1:])
        else:
            out.append(line[:i])
    return out


def corpus(schema: EventSchema, records: list[dict], seed: int) -> list[str]:
    rng = random.Random(seed)
    valid = [r for r in records if isinstance(schema.validate(r), dict)]
    lines = [json.dumps(r, ensure_ascii=rng.random() < 0.5) for r in records]
    lines += field_variants(schema, valid[0])
    for line in rng.sample(lines[:len(records)], min(400, len(records))):
        lines += edits(rng, line, 10)
    return lines


def python_verdict(schema: EventSchema, line: str, not_after: int | None) -> str:
    if not line.strip():
        return "blank"
    event = schema.validate(decode_json_line(line), not_after)
    if isinstance(event, Invalid):
        return "invalid"
    return "ok" + "".join("\t" + encode(event[f.name]) for f in schema.fields)


def encode(value) -> str:
    """``RecordValidator.verdicts``' spelling of a typed value."""
    if value is None:
        return "n"
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return "b" + str(value).lower()
    if isinstance(value, float):
        return "d" + format(struct.unpack("<Q", struct.pack("<d", value))[0], "x")
    if isinstance(value, int):
        return f"l{value}"
    return "s" + value.encode("utf-16-be").hex()


def jvm_verdicts(schema: EventSchema, lines: list[str], not_after: int | None) -> list[str]:
    from pyflink.java_gateway import get_gateway

    payload = "".join(f"{len(line.encode('utf-16-le')) // 2}:{line}" for line in lines)
    text = get_gateway().jvm.dev.tandem.udf.RecordValidator.verdicts(
        validation_spec(schema), payload, NO_BOUND if not_after is None else not_after)
    return text.split("\n")[:-1]


@pytest.mark.parametrize("schema", [TRANSACTIONS.schema, OTHER], ids=["reference", "other"])
@pytest.mark.parametrize("not_after", [NOT_AFTER, None], ids=["bounded", "unbounded"])
def test_the_jvm_validator_agrees_with_transforms_schema(_flink_gateway, schema, not_after):
    records = generate(StreamSpec(users=50, merchants=10, rate_per_s=0.2, duration="48h", seed=5,
                                  time_format="iso")) + adversarial_events()
    if schema is OTHER:
        rng = random.Random(6)
        records = [{"id": r.get("transaction_id"), "n": rng.choice([0, -1, 2**63 - 1, -2**63, 7, 2**63, 1.0]),
                    "x": rng.choice([None, 0.5, -0.0, 1e308, "1"]), "note": rng.choice([None, "", "ü", 3]),
                    "t": r.get("event_time"), "ok": rng.choice([True, False, True, 1, "true"]),
                    "flag": rng.choice([None, True, False, 0, "false"])} for r in records]
    lines = corpus(schema, records, seed=7)
    expected = [python_verdict(schema, line, not_after) for line in lines]
    got = jvm_verdicts(schema, lines, not_after)
    assert len(got) == len(lines)
    wrong = [(line[:120], e, g) for line, e, g in zip(lines, expected, got) if e != g]
    assert not wrong, f"{len(wrong)} of {len(lines)} lines differ, first: {wrong[:5]}"
    kinds = {e.split("\t")[0] for e in expected}
    assert kinds == {"ok", "invalid", "blank"}
    assert sum(e.startswith("ok") for e in expected) > 1_000  # most generated records are valid


def custom_rule(value: float) -> str | None:
    """The reference's amount rule, but a Python function the JVM has no twin of."""
    return finite_non_negative(value)


def with_amount_rule(rule):
    """The reference catalog with ``rule`` as the amount field's domain rule."""
    schema = TRANSACTIONS.schema
    fields = tuple(dataclasses.replace(f, rule=rule) if f.name == "amount" else f for f in schema.fields)
    return dataclasses.replace(TRANSACTIONS, schema=dataclasses.replace(schema, fields=fields))


def test_only_rules_with_a_jvm_twin_compile():
    assert validation_spec(TRANSACTIONS.schema) is not None
    assert validation_spec(with_amount_rule(custom_rule).schema) is None


def test_a_schema_without_jvm_rules_is_validated_in_python_and_equals_the_reference(flink_table_env, tmp_path):
    catalog = with_amount_rule(custom_rule)  # no JVM twin: the job must fall back to the Python UDF
    assert pipeline.register_validation(flink_table_env, catalog, None) == "python"
    records = generate(StreamSpec(users=10, merchants=4, rate_per_s=0.05, duration="6h", out_of_order=0.2, seed=8))
    records += adversarial_events()
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(r) + "\n" for r in records))
    run(flink_table_env, stream_spec(f"file:{events}", tmp_path / "out", 5_000, catalog=catalog))
    assert_matches_reference(records, feature_rows(tmp_path / "out", catalog), dead_letters(tmp_path / "out"), 5_000)


def test_a_line_the_jvm_refuses_and_python_accepts_is_a_dead_letter_not_a_loss(flink_table_env, tmp_path, monkeypatch):
    """The disagreement the cross-check above rules out still cannot lose an event silently."""
    catalog = with_amount_rule(None)  # Python accepts negative amounts; the JVM spec below refuses them
    monkeypatch.setattr(pipeline, "validation_spec", lambda schema: validation_spec(TRANSACTIONS.schema))
    from tests.factories import NOON, tx

    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(tx("fine", t=NOON)) + "\n" + json.dumps(tx("negative", amount=-1.0, t=NOON + 1)) + "\n")
    run(flink_table_env, stream_spec(f"file:{events}", tmp_path / "out", 5_000, catalog=catalog))
    assert [r["transaction_id"] for r in feature_rows(tmp_path / "out", catalog)] == ["fine"]
    [dead] = dead_letters(tmp_path / "out")
    assert (dead["transaction_id"], dead["reason"], dead["kind"]) == ("negative", "invalid", pipeline.MISMATCH)
    assert "Tandem bug" in dead["detail"]
