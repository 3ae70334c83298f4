"""tfgate.plans.config: [models.NAME] sections read and checked before any backend call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfgate import cli
from tfgate.config import ConfigError
from tfgate.plans import config as plans_config
from tfgate.plans.config import PipelineConfigError
from tfgate.plans.steps import Labels, Lookup, Normalize, Pad, Tokenize

SENTIMENT = """
[models.sentiment]
signature = "serving_default"

[models.sentiment.inputs.text]
alias = "token_ids"
steps = [
  { op = "lowercase" },
  { op = "tokenize", pattern = "[a-z']+" },
  { op = "lookup", file = "assets/vocab.txt", oov_token = "<unk>" },
  { op = "pad", length = 8 },
]

[models.sentiment.outputs.label]
alias = "probabilities"
steps = [{ op = "labels", file = "assets/labels.txt", k = 2, scores_as = "score" }]
"""


@pytest.fixture
def write(tmp_path: Path):
    """Writes the config (and the asset files) into tmp_path; returns the config's path."""
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "vocab.txt").write_text("<pad>\n<unk>\na\ngreat\nmovie\n")
    (assets / "labels.txt").write_text("negative\nneutral\npositive\n")
    (assets / "stats.csv").write_text("feature,mean,std\nx,1.0,2.0\ny,3,4\n")

    def write(text: str, **files: str) -> str:
        for name, content in files.items():
            (tmp_path / name).write_text(content)
        path = tmp_path / "tfgate.toml"
        path.write_text(text)
        return str(path)

    return write


def test_no_file_and_no_models_mean_no_sections(write) -> None:
    assert plans_config.load(None) == {}
    assert plans_config.load(write('listen = "127.0.0.1:1"\n')) == {}


def test_a_full_section(write) -> None:
    sections = plans_config.load(write(SENTIMENT))
    section = sections["sentiment"]
    assert section.signature == "serving_default"
    text = section.inputs["text"]
    assert text.alias == "token_ids" and text.source == "text" and text.default is None
    tokenize, lookup, pad = text.steps[1:]
    assert isinstance(tokenize, Tokenize) and tokenize.pattern == "[a-z']+"
    assert isinstance(lookup, Lookup) and lookup.oov_id == 1 and lookup.vocabulary["movie"] == 4
    assert isinstance(pad, Pad) and (pad.length, pad.value, pad.truncate) == (8, 0, "end")
    label = section.outputs["label"]
    assert label.alias == "probabilities" and label.steps == ()
    assert isinstance(label.labels, Labels)
    assert label.labels.labels == ("negative", "neutral", "positive")
    assert (label.labels.k, label.labels.scores_as) == (2, "score")


def test_numeric_steps_defaults_and_renames(write) -> None:
    sections = plans_config.load(
        write("""
[models.m.inputs.pixels]
alias = "image"
steps = [
  { op = "scale", factor = 0.00392156862745098 },
  { op = "normalize", file = "assets/stats.csv" },
  { op = "clip", min = -3 },
  { op = "reshape", shape = [-1, 2] },
]
[models.m.inputs.temperature]
default = 0.5
[models.m.inputs.note]
steps = [{ op = "lowercase" }]
default = "none"
[models.m.inputs.flags]
default = [true, false]
[models.m.outputs.score]
alias = "logits"
steps = [{ op = "scale", factor = [1, 2] }, { op = "cast", dtype = "float64" }]
""")
    )["m"]
    pixels = section_input = sections.inputs["pixels"]
    assert section_input.source == "number"
    normalize = pixels.steps[1]
    assert isinstance(normalize, Normalize) and normalize.file == "assets/stats.csv"
    np.testing.assert_allclose(normalize.mean, [1, 3])
    temperature = sections.inputs["temperature"]
    assert temperature.steps == () and temperature.source is None
    assert temperature.default is not None and temperature.default.tolist() == 0.5
    note = sections.inputs["note"].default
    assert note is not None and note.dtype == object and note.tolist() == "none"
    flags = sections.inputs["flags"].default
    assert flags is not None and flags.dtype == np.bool_
    assert [s.op for s in sections.outputs["score"].steps] == ["scale", "cast"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models = 3\n", "'models' must be a table of [models.NAME] sections"),
        ("[models]\nm = 1\n", "model 'm': [models.m] must be a table"),
        ("[models.m]\nsignatures = 'x'\n", "model 'm': unknown parameter 'signatures'"),
        ("[models.m]\ninputs = ['a']\n", "model 'm': 'inputs' must hold one table per input"),
        ("[models.m.inputs.x]\nsteps = 'lowercase'\n", "input 'x': 'steps' must be a list of"),
        ("[models.m.inputs.x]\nalias = 3\n", "input 'x': 'alias' must be a string, got 3"),
        ("[models.m.inputs.x]\nsteps = [{ name = 'pad' }]\n", "step 1: needs 'op'"),
        (
            "[models.m.inputs.x]\nsteps = [{ op = ['lowercase'] }]\n",
            "input 'x', step 1: needs 'op', the step's name, got ['lowercase']",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'stem' }]\n",
            "input 'x', step 1: unknown step 'stem' (steps: cast, clip, expand, lookup,",
        ),
        (
            "[models.m.outputs.y]\nsteps = [{ op = 'lowercase' }]\n",
            "output 'y', step 1: unknown step 'lowercase' (steps: cast, clip, expand, labels,",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'labels', file = 'assets/labels.txt' }]\n",
            "unknown step 'labels'",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'clip', min = 0, mni = 4 }]\n",
            "step 1 'clip': unknown parameter 'mni' (parameters: max, min)",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'lowercase' }, { op = 'pad', length = 2 }]\n",
            "step 2 'pad': takes ids or tokens, but is given text",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'lowercase' }, { op = 'scale', factor = 2 }]\n",
            "step 2 'scale': takes float or int or number, but is given text",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }]\n",
            "input 'x': the steps end with rows of tokens of different lengths; end them with a "
            "'pad' step",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize', pattern = '(a|b)' }]\n",
            "step 1 'tokenize': pattern '(a|b)' has a capturing group",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, "
            "{ op = 'lookup', file = 'missing.txt', oov_id = 1 }, { op = 'pad', length = 2 }]\n",
            "step 2 'lookup': file {tmp}/missing.txt: No such file or directory",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, "
            "{ op = 'lookup', file = 'dup.txt', oov_id = 0 }, { op = 'pad', length = 2 }]\n",
            "file {tmp}/dup.txt: line 3 repeats the token 'a' of line 1",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, "
            "{ op = 'lookup', file = 'gap.txt', oov_id = 0 }, { op = 'pad', length = 2 }]\n",
            "file {tmp}/gap.txt: line 2 is empty",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, "
            "{ op = 'lookup', file = 'empty.txt', oov_id = 0 }, { op = 'pad', length = 2 }]\n",
            "file {tmp}/empty.txt is empty",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, "
            "{ op = 'lookup', file = 'latin1.txt', oov_id = 0 }, { op = 'pad', length = 2 }]\n",
            "file {tmp}/latin1.txt: not UTF-8 text",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, "
            "{ op = 'lookup', file = 'assets/vocab.txt' }, { op = 'pad', length = 2 }]\n",
            "step 2 'lookup': set one of 'oov_token' (a token of the file) or 'oov_id'",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, { op = 'lookup', "
            "file = 'assets/vocab.txt', oov_token = '[UNK]' }, { op = 'pad', length = 2 }]\n",
            "oov_token '[UNK]' is not in {tmp}/assets/vocab.txt",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, { op = 'lookup', "
            "file = 'assets/vocab.txt', oov_id = 1 }, { op = 'pad', length = 0 }]\n",
            "step 3 'pad': length must be at least 1, got 0",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'tokenize' }, { op = 'lookup', "
            "file = 'assets/vocab.txt', oov_id = 1 }, { op = 'pad', length = 2, value = '' }]\n",
            "step 3 'pad': pads ids, so value must be an integer, got ''",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'pad', length = true }]\n",
            "takes ids or tokens",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'scale' }]\n",
            "step 1 'scale': set 'factor', 'offset' or both",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'scale', factor = 'two' }]\n",
            "'factor' must be a number or a list of numbers, got 'two'",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'normalize', mean = [1, 2], std = [1, 0] }]\n",
            "step 1 'normalize': std must be positive",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'normalize', mean = 1 }]\n",
            "step 1 'normalize': 'std' is required",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'normalize', file = 'assets/stats.csv', "
            "mean = 1 }]\n",
            "set either 'file' or 'mean' and 'std'",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'normalize', file = 'nostd.csv' }]\n",
            "file {tmp}/nostd.csv: needs a header row with 'mean' and 'std' columns",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'normalize', file = 'badstd.csv' }]\n",
            "file {tmp}/badstd.csv: could not convert string to float: 'wide'",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'clip', min = 2, max = 1 }]\n",
            "step 1 'clip': min (2.0) is above max (1.0)",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'cast', dtype = 'string' }]\n",
            "step 1 'cast': dtype 'string' is not one of float32, float64, int32",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'reshape', shape = [-1, -1] }]\n",
            "step 1 'reshape': shape [-1, -1]: sizes must be at least 0, with at most one -1",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'reshape', shape = '4' }]\n",
            "'shape' must be a list of integers, got '4'",
        ),
        (
            "[models.m.inputs.x]\nsteps = [{ op = 'expand', axis = 0.5 }]\n",
            "'axis' must be an integer, got 0.5",
        ),
        (
            "[models.m.outputs.y]\nsteps = [{ op = 'labels', file = 'assets/labels.txt', "
            "k = 4 }]\n",
            "output 'y', step 1 'labels': k must be from 1 to the 3 labels, got 4",
        ),
        (
            "[models.m.outputs.y]\nsteps = [{ op = 'labels', file = 'assets/labels.txt' }, "
            "{ op = 'round' }]\n",
            "output 'y': 'labels' must be the last step",
        ),
        (
            "[models.m.outputs.y]\nsteps = [{ op = 'labels', file = 'assets/labels.txt', "
            "scores_as = 'y' }]\n",
            "scores_as 'y' is the output's own name",
        ),
        (
            "[models.m.outputs.y]\nsteps = [{ op = 'labels', file = 'assets/labels.txt', "
            "scores_as = 'z' }]\n[models.m.outputs.z]\n",
            "output 'y': scores_as 'z' is the name of another output",
        ),
        (
            "[models.m.inputs.a]\nalias = 'x'\n[models.m.inputs.b]\nalias = 'x'\n",
            "model 'm': inputs 'a' and 'b' both feed 'x'",
        ),
        ("[models.m.inputs.a]\ndefault = [1, 'a']\n", "input 'a': 'default' mixes types"),
        ("[models.m.inputs.a]\ndefault = [[1], [1, 2]]\n", "nested lists of different lengths"),
        (
            "[models.m.inputs.a]\nsteps = [{ op = 'lowercase' }]\ndefault = ['a', 'b']\n",
            "'default' must be one text (a string)",
        ),
        (
            "[models.m.inputs.a]\nsteps = [{ op = 'round' }]\ndefault = 'x'\n",
            "'default' must be numbers",
        ),
    ],
)
def test_static_problems_name_file_model_tensor_and_step(
    write, tmp_path: Path, text: str, needle: str
) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    path = write(
        text,
        **{
            "dup.txt": "a\nb\na\n",
            "gap.txt": "a\n\nb\n",
            "empty.txt": "",
            "nostd.csv": "mean,sd\n1,2\n",
            "badstd.csv": "mean,std\n1,wide\n",
        },
    )
    with pytest.raises(PipelineConfigError) as info:
        plans_config.load(path)
    message = str(info.value)
    assert message.startswith(f"config file {path}: ")
    assert needle.format(tmp=tmp_path.resolve()) in message


def test_the_file_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        plans_config.load(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.m\n")
    with pytest.raises(ConfigError, match=f"config file {bad}: "):
        plans_config.load(str(bad))


def test_serve_exits_2_naming_the_problem(write, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TFGATE_CONFIG", raising=False)
    path = write("[models.sentiment.inputs.text]\nsteps = [{ op = 'stem' }]\n")
    assert cli.main(["serve", "--config", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfgate: configuration error: ")
    assert f"config file {path}: model 'sentiment' input 'text', step 1: unknown step" in err


def test_serve_reads_the_sections_from_TFGATE_CONFIG(write, capsys, monkeypatch) -> None:
    path = write("[models.m.outputs.y]\nsteps = [{ op = 'labels', file = 'none.txt' }]\n")
    monkeypatch.setenv("TFGATE_CONFIG", path)
    assert cli.main(["serve"]) == 2
    assert "output 'y', step 1 'labels': file" in capsys.readouterr().err
