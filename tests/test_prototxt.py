"""The protobuf text-format parser: fields, nesting, repetition, comments, strings, enums, and
errors that point at the line and column."""
import pytest

from cnnlite.io.prototxt import Message, PrototxtError, parse_prototxt, read_prototxt

LAYER = """
name: "tiny"   # a comment after a field
# a comment on its own line
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  param: { lr_mult: 2 decay_mult: 0 }
  convolution_param {
    num_output: 96
    kernel_size: 11
    stride: 4
    weight_filler { type: "gaussian" std: 0.01 }
    bias_filler < type: "constant" value: -1.5e-3 >
  }
}
layer { name: "pool1" type: "Pooling" pooling_param { pool: MAX kernel_size: 3 } }
"""


def test_scalars_get_their_python_types():
    message = parse_prototxt('i: 96  f: 0.01  e: -1.5e-3  g: .5  s: "text"  enum: MAX  '
                             'yes: true  no: false')
    assert message.get("i") == 96 and type(message.get("i")) is int
    assert message.get("f") == 0.01 and message.get("e") == -1.5e-3 and message.get("g") == 0.5
    assert message.get("s") == "text" and message.get("enum") == "MAX"
    assert message.get("yes") is True and message.get("no") is False


def test_nested_messages_with_and_without_colon_and_angle_brackets():
    net = parse_prototxt(LAYER)
    conv = net.all("layer")[0]
    assert conv.get("name") == "conv1"
    assert conv.message("convolution_param").message("weight_filler").get("std") == 0.01
    assert conv.message("convolution_param").message("bias_filler").get("value") == -1.5e-3
    assert [p.get("lr_mult") for p in conv.all("param")] == [1, 2]


def test_repeated_fields_keep_file_order_and_get_gives_the_last():
    message = parse_prototxt("mean_value: 104 mean_value: 117 mean_value: 124")
    assert message.all("mean_value") == [104, 117, 124]
    assert message.get("mean_value") == 124
    assert parse_prototxt("v: [1, 2.5, 3]").all("v") == [1, 2.5, 3]


def test_absent_fields_give_defaults_and_empty_messages():
    message = parse_prototxt("a: 1")
    assert message.get("b", 7) == 7 and message.all("b") == []
    assert isinstance(message.message("b"), Message) and message.message("b").get("x", 3) == 3
    assert "a" in message and "b" not in message


def test_comments_are_ignored_even_with_braces_and_quotes_inside():
    message = parse_prototxt('# layer { name: "x"\na: 1 # } "unclosed\nb: 2')
    assert message.names() == ["a", "b"]


def test_string_escapes_are_decoded():
    message = parse_prototxt(r's: "a \"quoted\" \\ word\n\t\x41\101"  t: ' + r"'it\'s'")
    assert message.get("s") == 'a "quoted" \\ word\n\tAA'
    assert message.get("t") == "it's"


def test_lines_are_kept_for_error_messages():
    net = parse_prototxt(LAYER, source="net.prototxt")
    pool = net.all("layer")[1]
    assert net.line_of("layer", 1) == 19 and pool.line == 19
    assert net.where("name") == "net.prototxt:2"


def test_a_solver_with_net_param_parses():
    solver = parse_prototxt('base_lr: 0.01\nlr_policy: "step"\nnet_param {' + LAYER + "}")
    assert solver.get("lr_policy") == "step"
    assert len(solver.message("net_param").all("layer")) == 2


def test_benchmark_baseline_file_parses(tmp_path):
    from pathlib import Path
    path = (Path(__file__).resolve().parents[2] / "shared" / "references" / "caffenet-benchmark"
            / "prototxt" / "caffenet128_lsuv.prototxt")
    if not path.exists():
        pytest.skip("the caffenet-benchmark prototxt files are not here")
    solver = read_prototxt(path)
    assert solver.get("base_lr") == 0.01
    names = [layer.get("name") for layer in solver.message("net_param").all("layer")]
    assert "conv1" in names and "fc8" in names


@pytest.mark.parametrize("text, line, column, expected", [
    ('layer {\n  name: "a"\n', None, None, "'}' to close the message opened on line 1"),
    ('a: 1\nb: "no end\n', 2, 4, "a closing quote"),
    ("a: 1\n  b 2\n", 2, 5, "':' or '{' after field name 'b'"),
    ("a: 1\n}\n", 2, 1, "a field name"),
    ("a: 1\nb: }\n", 2, 4, "a value for field 'b'"),
    ("a: 1\nb: @\n", 2, 4, "a name, number, string"),
])
def test_malformed_text_names_file_line_column_and_what_was_expected(text, line, column,
                                                                      expected):
    with pytest.raises(PrototxtError) as caught:
        parse_prototxt(text, source="bad.prototxt")
    message = str(caught.value)
    where = "bad.prototxt:" + ("" if line is None else f"{line}:{column}:")
    assert message.startswith(where) and expected in message


def test_a_scalar_where_a_message_is_expected_is_an_error():
    with pytest.raises(PrototxtError, match=r"<text>:1: expected 'p \{ \.\.\. \}'"):
        parse_prototxt("p: 3").message("p")
